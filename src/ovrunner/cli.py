"""The `ovrunner` command: flags become settings, then the work happens elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING

from ovrunner.errors import OvrunnerError
from ovrunner.settings import Settings, load_settings

if TYPE_CHECKING:
    import httpx


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file (OVRUNNER_CONFIG)")
    parser.add_argument("--store-dir", type=Path, help="model store (OVRUNNER_STORE_DIR)")
    parser.add_argument("--device", help="OpenVINO device, e.g. CPU or GPU (OVRUNNER_DEVICE)")
    parser.add_argument("--kv-cache-gb", type=int, help="KV cache per runner in GB")
    parser.add_argument("--max-queue", type=int, help="requests admitted per runner")
    parser.add_argument("--log-level", help="logging level (OVRUNNER_LOG_LEVEL)")
    parser.add_argument("--jobs-file", type=Path, help="extra worker job presets (TOML)")
    parser.add_argument("--npu-model", help="the model the openvino-npu engine serves")
    parser.add_argument("--npu-device", help="device of the openvino-npu engine (NPU)")
    parser.add_argument("--npu-busy-path", type=Path, help="the NPU busy-time file in sysfs")
    parser.add_argument("--busy-counter", choices=["auto", "cpu", "npu"],
                        help="counter that verifies worker jobs (auto: by device)")  # fmt: skip


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    flags = {
        "store_dir": args.store_dir,
        "device": args.device,
        "kv_cache_gb": args.kv_cache_gb,
        "max_queue": args.max_queue,
        "log_level": args.log_level,
        "jobs_file": args.jobs_file,
        "npu_model": args.npu_model,
        "npu_device": args.npu_device,
        "npu_busy_path": args.npu_busy_path,
        "busy_counter": args.busy_counter,
        **extra,
    }
    return load_settings(args.config, **flags)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ovrunner.app import create_app

    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        model=args.model,
        only=args.only or None,
        preload=args.preload or None,
    )
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from ovrunner.app import create_app
    from ovrunner.engines.base import GenerationRequest, SamplingParams

    settings = _settings(args)
    app = create_app(settings)
    request = GenerationRequest(
        messages=[{"role": "user", "content": args.prompt}],
        sampling=SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature),
    )

    async def stream() -> None:
        lifecycle = app.state.lifecycle
        try:
            runner = await lifecycle.runner_for(args.model)
            async with aclosing(runner.generate(request)) as deltas:
                async for delta in deltas:
                    sys.stdout.write(delta.text)
                    sys.stdout.flush()
            sys.stdout.write("\n")
        finally:
            await lifecycle.close()

    asyncio.run(stream())
    return 0


def _job(args: argparse.Namespace) -> int:
    """Run one worker job and print the worker response; exit 0 only when the job
    succeeded and its busy counter moved."""
    import httpx

    payload: dict[str, object] = {"job": args.job, "input": args.input}
    if args.max_new_tokens is not None:
        payload["max_new_tokens"] = args.max_new_tokens
    if args.url:
        try:
            response = httpx.post(f"{args.url.rstrip('/')}{JOB_PATH}", json=payload, timeout=600)
        except httpx.HTTPError as exc:
            print(f"ovrunner: cannot reach {args.url}: {exc}", file=sys.stderr)
            return 1
    else:
        response = asyncio.run(_job_in_process(_settings(args), payload))
    body = response.json()
    print(json.dumps(body, indent=2, ensure_ascii=False))
    if response.status_code == 400:
        return 2
    return 0 if response.status_code == 200 and body.get("busy_delta_us", 0) > 0 else 1


JOB_PATH = "/exp/v1/worker/generate"


async def _job_in_process(settings: Settings, payload: dict[str, object]) -> httpx.Response:
    """The same route a server would run, through the ASGI app in this process."""
    import httpx

    from ovrunner.app import create_app

    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ovrunner") as client:
            return await client.post(JOB_PATH, json=payload, timeout=None)
    finally:
        await app.state.lifecycle.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovrunner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API")
    serve.add_argument("--model", help="default model (OVRUNNER_MODEL); smollm2-135m if unset")
    serve.add_argument("--host", help="bind address (OVRUNNER_HOST), 127.0.0.1 by default")
    serve.add_argument("--port", type=int, help="port (OVRUNNER_PORT), 18820 by default")
    serve.add_argument("--only", action="store_true", help="serve only --model; 421 for others")
    serve.add_argument("--preload", action="store_true", help="load the model at start-up")
    _settings_flags(serve)
    serve.set_defaults(handler=_serve)

    run = commands.add_parser("run", help="generate one chat answer, streamed to the terminal")
    run.add_argument("model")
    run.add_argument("prompt")
    run.add_argument("--max-tokens", type=int, default=256)
    run.add_argument("--temperature", type=float)
    _settings_flags(run)
    run.set_defaults(handler=_run)

    job = commands.add_parser("job", help="run one bounded worker job and print its JSON")
    job.add_argument("--job", required=True, help="title, summary, notification, memory_candidate")
    job.add_argument("--input", required=True, help="the text the job works on")
    job.add_argument("--max-new-tokens", type=int)
    job.add_argument("--url", help="send the job to a running server instead")
    _settings_flags(job)
    job.set_defaults(handler=_job)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except OvrunnerError as exc:
        print(f"ovrunner: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
