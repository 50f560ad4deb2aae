"""Engine settings side by side: one `ovrunner serve` per variant of its settings, measured
in alternating order with the suite's load generator (streams sent at once, greedy, 128
tokens, end-of-sequence suppressed).

    python -m bench.settings --variant default= --variant window5=--admission-window-ms=5 \\
                             [--levels 1 16] [--rounds 3]

A variant is NAME=FLAGS, its flags to `ovrunner serve` separated by commas. Writes
bench/results/settings.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from tests.support.server import ServerProcess

from bench.suite import RESULTS, Level, run_http
from bench.throughput import MODEL, prompts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, help="NAME=FLAG,FLAG")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    store = Path(tempfile.mkdtemp(prefix="ovrunner-settings-"))
    servers = {}
    try:
        for name, flags in variants.items():
            servers[name] = ServerProcess(store, "--preload", *[f for f in flags.split(",") if f])
            servers[name].wait_ready()
        results: dict[str, list[dict[str, object]]] = {}
        for level in args.levels:
            texts = prompts(level)
            for server in servers.values():  # warm each at this level
                run_http("warm", server.base_url, MODEL, texts, 4, len)
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for name in order:
                    level_run: Level = run_http(name, servers[name].base_url, MODEL, texts,
                                                args.max_tokens, len)  # fmt: skip
                    results.setdefault(f"{name}@{level}", []).append(level_run.row())
                    print(json.dumps(level_run.row()), flush=True)
    finally:
        for server in servers.values():
            server.stop()
    summary = {key: {"tok_s": statistics.median(float(r["tok_s"]) for r in rows),  # type: ignore[arg-type]
                     "ttft_p50": statistics.median(float(r["ttft_p50"]) for r in rows),  # type: ignore[arg-type]
                     "ttft_p90": statistics.median(float(r["ttft_p90"]) for r in rows)}  # type: ignore[arg-type]
               for key, rows in results.items()}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "settings.json").write_text(json.dumps({"variants": variants, "runs": results,
                                                       "medians": summary}, indent=2))  # fmt: skip
    for key, row in summary.items():
        print(key, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
