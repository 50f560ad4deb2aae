"""What the admission checks cost: single-stream tokens/s on a server with them and on one
without (the last commit before them, from a git worktree), side by side in one run, plain
and with a JSON schema repeated on every request (its compile is cached); then each check's
own cost per request, measured in-process.

    python -m bench.checks [--before REV] [--rounds 6] [--max-tokens 128] [--label checks]

Writes bench/results/LABEL.json and bench/results/LABEL.md (LABEL: `checks` by default; the
same comparison serves any change that must not cost a plain request anything).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.server import ServerProcess

from bench.suite import RESULTS, run_http
from bench.throughput import MODEL, prompts

BEFORE = "ac96398"  # the last commit before the checks
SCHEMA = {
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
            },
        },
    }
}


def server_at(revision: str, store: Path) -> tuple[ServerProcess, Path]:
    """A server running the code of `revision` (its `src` first on the import path)."""
    tree = Path(tempfile.mkdtemp(prefix="ovrunner-before-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], check=True,
                   capture_output=True)  # fmt: skip
    env = {"PYTHONPATH": f"{tree / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    return ServerProcess(store, "--preload", env=env).wait_ready(), tree


def check_costs(repeats: int = 2000) -> dict[str, float]:
    """Microseconds per request of each check, on a typical 1 KB chat body."""
    from ovrunner.engines.openvino.grammar import SchemaCheck
    from ovrunner.routes.body import _ESCAPED_SURROGATE
    from ovrunner.security import HostGuard, host_name

    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "word " * 200}],
                       **SCHEMA}).encode()  # fmt: skip
    guard = HostGuard(lambda *a: None, "127.0.0.1", [])  # type: ignore[arg-type]
    schema = json.dumps(SCHEMA["response_format"]["json_schema"]["schema"])
    check = SchemaCheck()

    def timed(work) -> float:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        for _ in range(repeats):
            work()
        return round((time.perf_counter() - started) / repeats * 1e6, 2)

    async def cached() -> float:
        await check.check(schema)  # compiles once
        started = time.perf_counter()
        for _ in range(repeats):
            await check.check(schema)
        return round((time.perf_counter() - started) / repeats * 1e6, 2)

    started = time.perf_counter()
    asyncio.run(check.check(json.dumps({"type": "array", "items": {"type": "integer"}})))
    return {
        "surrogate_scan_us": timed(lambda: _ESCAPED_SURROGATE.search(body)),
        "host_check_us": timed(lambda: guard.allows(host_name(b"127.0.0.1:18820"))),
        "schema_check_cached_us": asyncio.run(cached()),
        "schema_first_compile_ms_incl_probe_build": round(
            (time.perf_counter() - started) * 1000, 1
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--label", default="checks", help="name of the result files")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="ovrunner-bench-checks-"))
    after = ServerProcess(store, "--preload").wait_ready()  # converts the GGUF once
    before, tree = server_at(args.before, store)
    servers = {"before": before, "after": after}
    texts = prompts(1)
    samples: dict[str, list[float]] = {f"{n} {k}": [] for n in servers for k in ("plain", "schema")}
    count = len  # usage is always in the stream here
    try:
        for name, server in servers.items():  # warm both paths
            run_http(name, server.base_url, MODEL, texts, 8, count, SCHEMA)
        for round_ in range(args.rounds):
            order = list(servers.items()) if round_ % 2 == 0 else list(servers.items())[::-1]
            for kind, extra in (("plain", None), ("schema", SCHEMA)):
                for name, server in order:
                    level = run_http(name, server.base_url, MODEL, texts, args.max_tokens,
                                     count, extra)  # fmt: skip
                    tokens = sum(s.tokens for s in level.streams if s.ok)
                    samples[f"{name} {kind}"].append(tokens / level.seconds)
    finally:
        before.stop()
        after.stop()
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(store, ignore_errors=True)
    medians = {key: round(statistics.median(v), 1) for key, v in samples.items()}
    report = {
        "rounds": args.rounds, "max_tokens": args.max_tokens, "before": args.before,
        "tokens_per_s_median": medians,
        "after_over_before": {k: round(medians[f"after {k}"] / medians[f"before {k}"], 3)
                              for k in ("plain", "schema")},
        "check_costs": check_costs(),
    }  # fmt: skip
    (RESULTS / f"{args.label}.json").write_text(json.dumps(report, indent=2))
    lines = [
        "| request | before tok/s | after tok/s | after / before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind in ("plain", "schema"):
        lines.append(f"| {kind} | {medians[f'before {kind}']} | {medians[f'after {kind}']} | "
                     f"{report['after_over_before'][kind]} |")  # fmt: skip
    lines += ["", *(f"- `{k}`: {v}" for k, v in report["check_costs"].items())]
    (RESULTS / f"{args.label}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
