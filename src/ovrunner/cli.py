"""The `ovrunner` command: flags become settings, then the work happens elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from ovrunner.cli_common import human_size, print_table, settings_flags, settings_from
from ovrunner.errors import OvrunnerError
from ovrunner.security import check_bind
from ovrunner.settings import Settings

if TYPE_CHECKING:
    import httpx


def _quiet_libraries(level: str) -> None:
    """A server logs its own lines only: the Hub client's request lines and progress bars
    (a pull), and the tokenizer converter's steps (an encoder's first load), are for a
    terminal, not for a server's log."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    if level.lower() != "debug":
        for name in ("httpx", "httpx2", "httpcore", "huggingface_hub", "openvino_tokenizers"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ovrunner.app import create_app
    from ovrunner.connections import uvicorn_options
    from ovrunner.draining import DrainingServer

    settings = settings_from(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    _quiet_libraries(settings.log_level)
    if settings.uds is None:  # a socket file is reachable only through its permissions
        check_bind(settings.host, settings.resolved_api_key())
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        uds=str(settings.uds) if settings.uds is not None else None,
        log_level=settings.log_level.lower(),
        # ovrunner's own access log (method, path, status, duration) replaces uvicorn's.
        access_log=False,
        # After draining (draining.py), what is still running gets this long to finish.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        **uvicorn_options(settings),
    )
    DrainingServer(config, app.state.drain).run()
    return 0


def _run(args: argparse.Namespace) -> int:
    from ovrunner.app import create_app
    from ovrunner.engines.base import GenerationRequest, SamplingParams

    settings = settings_from(args)
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


def _embed(args: argparse.Namespace) -> int:
    """Embed the texts in-process and print the vectors' shape and their cosine matrix: a
    quick check that an embedding model loads and tells texts apart."""
    from ovrunner.app import create_app
    from ovrunner.engines.base import EmbeddingRequest, Mode
    from ovrunner.errors import WrongModeError

    app = create_app(settings_from(args))

    async def embed() -> list[list[float]]:
        lifecycle = app.state.lifecycle
        model, _ = lifecycle.resolve(args.model)
        if model.mode is not Mode.EMBEDDING:
            raise WrongModeError(model.id, model.mode.value, Mode.EMBEDDING.value)
        try:
            runner = await lifecycle.runner_for(args.model)
            return (await runner.embed(EmbeddingRequest(texts=tuple(args.texts)))).vectors
        finally:
            await lifecycle.close()

    vectors = asyncio.run(embed())
    print(f"{len(vectors)} vectors of {len(vectors[0])} dimensions")
    norms = [math.sqrt(sum(x * x for x in v)) or 1.0 for v in vectors]
    print("cosine similarity:")
    for i, a in enumerate(vectors):
        row = [
            sum(x * y for x, y in zip(a, b)) / (norms[i] * norms[j]) for j, b in enumerate(vectors)
        ]
        print(f"  [{i}] " + " ".join(f"{c:6.3f}" for c in row) + f"  {args.texts[i][:40]!r}")
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
        response = asyncio.run(_job_in_process(settings_from(args), payload))
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
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.post(JOB_PATH, json=payload, timeout=None)
    finally:
        await app.state.lifecycle.close()


def _server_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    settings = settings_from(args)
    return f"http://{settings.host}:{settings.port}"


def _get(args: argparse.Namespace, path: str) -> Any:
    import httpx

    url = _server_url(args)
    try:
        response = httpx.get(url + path, timeout=10)
    except httpx.HTTPError as exc:
        raise OvrunnerError(f"no ovrunner server at {url}: {exc}") from exc
    return response.json()


def _ps(args: argparse.Namespace) -> int:
    runners = _get(args, "/engines/ps")["runners"]
    if args.json:
        print(json.dumps(runners, indent=2))
        return 0
    rows = []
    for r in runners:
        until = "forever" if r["keep_alive_s"] is None else (
            "in use" if r["in_use"] else time.strftime("%H:%M:%S", time.localtime(r["expires_at"]))
            if r["expires_at"] else "-")  # fmt: skip
        holds = r["holds"]
        rows.append([r["model"], r["engine"], r["decoding"], r["device"] or "-", r["state"],
                     human_size(holds["weights_bytes"]), human_size(holds["kv_cache_bytes"]),
                     human_size(holds["process_resident_bytes"]), until])  # fmt: skip
    print_table(["MODEL", "ENGINE", "DECODING", "DEVICE", "STATE", "WEIGHTS", "KV CACHE", "RESIDENT",
            "UNTIL"], rows)  # fmt: skip
    return 0


def _status(args: argparse.Namespace) -> int:
    engines = _get(args, "/engines/status")["engines"]
    health = _get(args, "/healthz")
    if args.json:
        print(json.dumps({"health": health, "engines": engines}, indent=2))
        return 0
    print(f"ovrunner at {health['bind']}: default model {health['model']} on {health['device']}"
          f" ({'loaded' if health['loaded'] else 'not loaded'})")  # fmt: skip
    print_table(["ENGINE", "STATUS", "DISK", "DETAIL"],
           [[e["name"], e["status"], human_size(e["disk_usage_bytes"]), e["detail"]] for e in engines])  # fmt: skip
    return 0 if health.get("ok") else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovrunner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API")
    settings_flags(serve)
    serve.set_defaults(handler=_serve)

    run = commands.add_parser("run", help="generate one chat answer, streamed to the terminal")
    run.add_argument("model")
    run.add_argument("prompt")
    run.add_argument("--max-tokens", type=int, default=256)
    run.add_argument("--temperature", type=float)
    settings_flags(run)
    run.set_defaults(handler=_run)

    embed = commands.add_parser("embed", help="embed texts; print the shape and cosine matrix")
    embed.add_argument("model")
    embed.add_argument("texts", nargs="+")
    settings_flags(embed)
    embed.set_defaults(handler=_embed)

    job = commands.add_parser("job", help="run one bounded worker job and print its JSON")
    job.add_argument("--job", required=True, help="title, summary, notification, memory_candidate")
    job.add_argument("--input", required=True, help="the text the job works on")
    job.add_argument("--max-new-tokens", type=int)
    job.add_argument("--url", help="send the job to a running server instead")
    settings_flags(job)
    job.set_defaults(handler=_job)

    from ovrunner.cli_models import add_models_parser

    add_models_parser(commands)

    for name, handler, text in (("ps", _ps, "loaded runners of a running server"),
                                ("status", _status, "engines and health of a running server")):  # fmt: skip
        command = commands.add_parser(name, help=text)
        command.add_argument("--url", help="server URL (from --host/--port settings if unset)")
        command.add_argument("--json", action="store_true", help="machine-readable output")
        settings_flags(command)
        command.set_defaults(handler=handler)
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
