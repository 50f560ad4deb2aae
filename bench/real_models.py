"""A stored real model served by ovrunner beside llama.cpp's llama-server on its original GGUF.

    python -m bench.real_models --store STORE --model ID --gguf ORIGINAL.gguf
                                [--levels 1 8 16] [--max-tokens 128] [--rounds 2]
                                [--draft ID --draft-gguf DRAFT.gguf]
                                [--serve-arg=--dynamic-quantization-group-size=0 ...]

At each concurrency level the same chat prompts are streamed to both servers, alternately,
with `ignore_eos`, so every stream generates `--max-tokens`; the median round counts. With
`--draft`, the model is also served with that stored model as its draft (`models create
--draft-model`) and compared with `llama-server -md` (llama.cpp's speculative decoding) on the
same pair at one stream. Resident memory of both servers (ovrunner with its engine process)
is read at their peak. Writes bench/results/real_models.json; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import openvino_genai
from tests.support.cli import run_cli
from tests.support.server import ServerProcess

from bench.memory import resident_mib
from bench.suite import LLAMA_SERVER, Level, PeerServer, llama_server, run_http
from bench.throughput import prompts

RESULTS = Path("bench/results")


def measure(name: str, base_url: str, model: str, level: int, args: argparse.Namespace,
            count_tokens) -> dict[str, object]:  # type: ignore[no-untyped-def]  # fmt: skip
    texts = prompts(level)
    run_http(name, base_url, model, texts, 4, count_tokens)  # warm
    rounds: list[Level] = [run_http(name, base_url, model, texts, args.max_tokens, count_tokens)
                           for _ in range(args.rounds)]  # fmt: skip
    row = rounds[0].row()
    row["tok_s"] = statistics.median(float(r.row()["tok_s"]) for r in rounds)  # type: ignore[arg-type]
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--draft", help="a stored model to draft for --model")
    parser.add_argument("--draft-gguf", type=Path, help="the draft's original GGUF")
    parser.add_argument("--llama-server", type=Path, default=LLAMA_SERVER)
    parser.add_argument("--serve-arg", action="append", default=[], dest="serve_args",
                        metavar="ARG", help="one more argument for `ovrunner serve`, as "
                        "--serve-arg=--flag=VALUE; repeat for more")  # fmt: skip
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tokenizer = openvino_genai.Tokenizer(str(args.store / "models" / args.model / "model"))

    def count_tokens(text: str) -> int:
        return int(tokenizer.encode(text, add_special_tokens=False).input_ids.shape[1])

    rows: list[dict[str, object]] = []
    memory: dict[str, float] = {}
    top = max(args.levels)
    server = ServerProcess(
        args.store, "--model", args.model, "--preload", *args.serve_args
    ).wait_ready(600)
    rival = PeerServer(None, RESULTS / "llama-server.log",
                       make=lambda port: llama_server(args.llama_server, args.gguf, port, top))  # fmt: skip
    try:
        for level in args.levels:
            # Alternate which server goes first, so drift does not favour one.
            order = [("ovrunner", server.base_url), ("llama-server", rival.base_url)]
            for name, url in order if level % 2 else reversed(order):
                rows.append(measure(name, url, args.model, level, args, count_tokens))
        memory["ovrunner_peak_mib"] = resident_mib(server.process.pid, "VmHWM")
        memory["llama_server_peak_mib"] = resident_mib(rival.process.pid, "VmHWM")
    finally:
        server.stop()
        rival.stop()
    if args.draft:
        rows += draft_rows(args, count_tokens)
    report = {"model": args.model, "gguf": args.gguf.name, "serve_args": args.serve_args,
              "max_tokens": args.max_tokens,
              "rounds": args.rounds, "rows": rows, "memory": memory}  # fmt: skip
    (RESULTS / "real_models.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    return 0


def draft_rows(args: argparse.Namespace, count_tokens) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """One stream: the model plain, with its draft, and llama-server -md on the same pair."""
    assisted = f"{args.model}-with-draft"
    run_cli("models", "create", assisted, "--from", args.model, "--draft-model", args.draft,
            "--store-dir", str(args.store))  # fmt: skip
    rows = []
    server = ServerProcess(
        args.store, "--model", assisted, "--preload", *args.serve_args
    ).wait_ready(600)
    try:
        row = measure("ovrunner+draft", server.base_url, assisted, 1, args, count_tokens)
        rows.append(row)
    finally:
        server.stop()
    peer = PeerServer(None, RESULTS / "llama-server-md.log", make=lambda port: [
        *llama_server(args.llama_server, args.gguf, port, 1), "-md", str(args.draft_gguf)])  # fmt: skip
    try:
        rows.append(measure("llama-server -md", peer.base_url, args.model, 1, args, count_tokens))
    finally:
        peer.stop()
    return rows


def table(report: dict) -> str:  # type: ignore[type-arg]
    lines = [
        "| system | streams | tok/s | TTFT p50 s | ITL p50 ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['system']} | {row['concurrency']} | {row['tok_s']} | "
                     f"{row['ttft_p50']} | {row['itl_p50_ms']} |")  # fmt: skip
    by = {(r["system"], r["concurrency"]): float(r["tok_s"]) for r in report["rows"]}
    for (system, level), tok_s in by.items():
        peer = by.get(("llama-server", level))
        if system == "ovrunner" and peer:
            lines.append(f"\novrunner / llama-server at {level}: {tok_s / peer:.2f}")
    memory = report["memory"]
    lines.append(f"\npeak resident memory: {json.dumps(memory)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
