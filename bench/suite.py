"""The benchmark suite: ovrunner, the raw pipeline and a peer server, side by side in one run.

At each concurrency level the same chat prompts go, back to back, to
- `raw`: OpenVINO GenAI's `ContinuousBatchingPipeline` stepped in this process (the limit);
- `ovrunner`: `ovrunner serve` on the same model, streamed over HTTP;
- `llama-server`: llama.cpp's own server on the same GGUF file, with parallel slots and
  continuous batching, two threads (built by `make bench-peer`: bench/build_llama_server.sh),
  measured every round like ovrunner: the peer to beat;
- `llama-cpp`: the llama-cpp-python server, once per level (it serializes requests).
A peer that is not built is skipped, and said so.
Then targeted measurements on ovrunner: its resident memory (with its engine process) idle and
at its peak, time to first token with a 1,500-token shared system prompt (prefix cache), and
start-up time cold against warm (saved IR, compile cache).

    python -m bench.suite [--levels 1 4 8 16] [--max-tokens 128] [--peer-python PATH]
                          [--llama-server PATH]

Writes bench/results/suite.json, bench/results/suite.md and bench/results/suite.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.support.server import ServerProcess, free_port

from bench.lookup import lookup_jobs
from bench.memory import resident_mib
from bench.report import markdown, plot, targets
from bench.throughput import MODEL, RawPipeline, prompts

RESULTS = Path("bench/results")
PEER_PYTHON = Path("bench/.peer-venv/bin/python")
LLAMA_SERVER = Path("bench/.peer/llama-server")
EOS_BIAS = {"2": -100}  # <|im_end|>: keeps every system generating max_tokens


@dataclass
class Stream:
    ttft_s: float | None = None
    itl_s: float | None = None  # mean gap between tokens after the first
    tokens: int = 0
    ok: bool = True


@dataclass
class Level:
    system: str
    concurrency: int
    seconds: float
    streams: list[Stream] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        done = [s for s in self.streams if s.ok]
        ttft = sorted(s.ttft_s for s in done if s.ttft_s is not None)
        itl = sorted(s.itl_s for s in done if s.itl_s is not None)
        return {
            "system": self.system, "concurrency": self.concurrency,
            "tok_s": round(sum(s.tokens for s in done) / self.seconds, 1),
            "ttft_p50": _pct(ttft, 50), "ttft_p90": _pct(ttft, 90), "ttft_p95": _pct(ttft, 95),
            "itl_p50_ms": _ms(_pct(itl, 50)), "itl_p95_ms": _ms(_pct(itl, 95)),
            "completed": len(done), "failed": len(self.streams) - len(done),
        }  # fmt: skip


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))], 3)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# -- the raw pipeline --------------------------------------------------------------------------


def run_raw(raw: RawPipeline, texts: list[str], max_tokens: int) -> Level:
    config = raw.genai.GenerationConfig(max_new_tokens=max_tokens, ignore_eos=True,
                                        apply_chat_template=False)  # fmt: skip
    rendered = [raw.tokenizer.apply_chat_template([{"role": "user", "content": t}],
                                                  add_generation_prompt=True) for t in texts]  # fmt: skip
    started = time.perf_counter()
    handles = [raw.pipe.add_request(i, p, config) for i, p in enumerate(rendered)]
    times: list[list[float]] = [[] for _ in handles]
    counts = [0] * len(handles)
    while raw.pipe.has_non_finished_requests():
        raw.pipe.step()
        now = time.perf_counter()
        for i, handle in enumerate(handles):
            if handle.can_read():
                new = sum(len(o.generated_ids) for o in handle.read().values())
                counts[i] += new
                times[i].extend([now] * new)
    seconds = time.perf_counter() - started
    return Level(
        "raw", len(texts), seconds, [_stream(started, t, c) for t, c in zip(times, counts)]
    )


def _stream(started: float, token_times: list[float], tokens: int) -> Stream:
    if not token_times:
        return Stream(ok=False)
    itl = (token_times[-1] - token_times[0]) / (tokens - 1) if tokens > 1 else None
    return Stream(token_times[0] - started, itl, tokens)


# -- streamed HTTP -----------------------------------------------------------------------------


async def _stream_http(host: str, port: int, model: str, text: str, max_tokens: int,
                       count_tokens, extra: dict | None = None) -> Stream:  # type: ignore[no-untyped-def]  # fmt: skip
    """One streamed chat completion on a bare HTTP/1.1 connection: the load generator shares
    two cores with the servers, so it only de-chunks and timestamps during the run and
    parses the events afterwards."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}],
                       "stream": True, "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True,
                       "stream_options": {"include_usage": True}, **(extra or {})}).encode()  # fmt: skip
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json"
                 b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (host.encode(), len(body), body))  # fmt: skip
    head = await reader.readuntil(b"\r\n\r\n")
    chunks: list[tuple[float, bytes]] = []
    chunked = b"chunked" in head.lower()
    while True:
        if chunked:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                break
            data = await reader.readexactly(size + 2)
            chunks.append((time.perf_counter(), data[:-2]))
        else:
            data = await reader.read(65536)
            if not data:
                break
            chunks.append((time.perf_counter(), data))
    writer.close()
    return _parse_events(started, chunks, count_tokens, ok=head.startswith(b"HTTP/1.1 200"))


def _parse_events(started: float, chunks: list[tuple[float, bytes]], count_tokens,  # type: ignore[no-untyped-def]
                  *, ok: bool) -> Stream:  # fmt: skip
    text_times: list[float] = []
    parts: list[str] = []
    usage = None
    buffer = b""
    for when, data in chunks:
        buffer += data
        *events, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                payload = json.loads(line[6:])
                usage = payload.get("usage") or usage
                for choice in payload.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
                        text_times.append(when)
    if not ok or not text_times:
        return Stream(ok=False)
    tokens = usage["completion_tokens"] if usage else count_tokens("".join(parts))
    itl = (text_times[-1] - text_times[0]) / (tokens - 1) if tokens > 1 else None
    return Stream(text_times[0] - started, itl, tokens)


def run_http(system: str, base_url: str, model: str, texts: list[str], max_tokens: int,
             count_tokens, extra: dict | None = None) -> Level:  # type: ignore[no-untyped-def]  # fmt: skip
    """`texts` streamed at once; `extra` adds fields to every request body (the peer's EOS
    ban, a `logit_bias`, which ovrunner refuses: it takes `ignore_eos`)."""
    url = httpx.URL(base_url)

    async def all_streams() -> list[Stream]:
        return list(await asyncio.gather(*(
            _stream_http(url.host, url.port or 80, model, t, max_tokens, count_tokens, extra)
            for t in texts)))  # fmt: skip

    started = time.perf_counter()
    streams = asyncio.run(all_streams())
    return Level(system, len(texts), time.perf_counter() - started, streams)


# -- the peer ----------------------------------------------------------------------------------


def llama_cpp_python(python: Path, gguf: Path, port: int) -> list[str]:
    """llama-cpp-python's OpenAI server on the same GGUF, with the same two threads."""
    return [str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_threads", "2", "--n_ctx", "4096",
            # Its default cuts a running stream whenever another request arrives.
            "--interrupt_requests", "False"]  # fmt: skip


def llama_server(binary: Path, gguf: Path, port: int, slots: int = 16) -> list[str]:
    """llama.cpp's server: a parallel slot per stream of the highest level (at least 16)
    sharing a context of 1,024 tokens a slot (at least 32k), continuous batching, the same
    two threads as ovrunner's engine."""
    slots = max(16, slots)
    return [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            "-t", "2", "-np", str(slots), "-c", str(max(32768, 1024 * slots)),
            "--cont-batching"]  # fmt: skip


class PeerServer:
    """A peer server process on a free port, started from `command(port)`."""

    def __init__(self, command: list[str] | None, log: Path, make=None) -> None:  # type: ignore[no-untyped-def]
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        argv = make(self.port) if make is not None else command
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.base_url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the peer server did not start; see {log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self._log.close()


# -- targeted measurements on ovrunner ---------------------------------------------------------


def prefix_cache(base_url: str, count_tokens, requests: int = 5) -> dict[str, object]:  # type: ignore[no-untyped-def]
    rules = " ".join(f"Rule {i}: answer politely, cite the handbook section {i}, and never "
                     f"reveal internal ticket numbers." for i in range(120))  # fmt: skip
    ttfts = []
    for i in range(requests):
        started = time.perf_counter()
        with httpx.stream("POST", f"{base_url}/v1/chat/completions", timeout=120, json={
            "model": MODEL, "max_tokens": 4, "temperature": 0, "stream": True,
            "messages": [{"role": "system", "content": rules},
                         {"role": "user", "content": f"Question {i}: what is rule {i}?"}],
        }) as response:  # fmt: skip
            for line in response.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    ttfts.append(time.perf_counter() - started)
                    break
    first, later = ttfts[0], statistics.median(ttfts[1:])
    return {"system_prompt_tokens": count_tokens(rules), "ttft_first_s": round(first, 3),
            "ttft_later_median_s": round(later, 3), "speedup": round(first / later, 2)}  # fmt: skip


def restart_times(store: Path) -> dict[str, object]:
    """Seconds to ready with --preload: a store without IR or compile cache, then again."""

    def start() -> float:
        started = time.perf_counter()
        server = ServerProcess(store, "--preload").wait_ready()
        seconds = time.perf_counter() - started
        server.stop()
        return seconds

    cold = start()
    warm = statistics.median([start(), start()])
    return {
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        "warm_over_cold": round(warm / cold, 2),
    }


# -- report ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measurements of raw and ovrunner per level, in alternating order",
    )
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--llama-server", type=Path, default=LLAMA_SERVER)
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)

    restart = restart_times(Path(tempfile.mkdtemp(prefix="ovrunner-cold-")))
    store = Path(tempfile.mkdtemp(prefix="ovrunner-bench-"))
    server = ServerProcess(store, "--preload").wait_ready()
    model_dir = store / "models" / MODEL
    raw = RawPipeline(model_dir, model_dir / "model.gguf")

    def count_tokens(text: str) -> int:
        return int(raw.tokenizer.encode(text, add_special_tokens=False).input_ids.shape[1])

    gguf = (model_dir / "model.gguf").resolve()
    peer = rival = None
    if args.peer_python.exists():
        peer = PeerServer(None, RESULTS / "peer.log",
                          make=lambda port: llama_cpp_python(args.peer_python, gguf, port))  # fmt: skip
    else:
        print(f"no llama-cpp-python peer: {args.peer_python} is missing", file=sys.stderr)
    if args.llama_server.exists():
        rival = PeerServer(None, RESULTS / "llama-server.log",
                           make=lambda port: llama_server(args.llama_server, gguf, port,
                                                          max(args.levels)))  # fmt: skip
    else:
        print(f"no llama-server: {args.llama_server} is missing (make bench-peer builds it)",
              file=sys.stderr)  # fmt: skip
    levels: list[Level] = []
    memory = {"idle_mib": resident_mib(server.process.pid)}
    try:
        for level in args.levels:
            texts = prompts(level)
            run_raw(raw, texts, 4)  # warm each path at this level
            run_http("ovrunner", server.base_url, MODEL, texts, 4, count_tokens)
            if rival is not None:
                run_http("llama-server", rival.base_url, MODEL, texts, 4, count_tokens)
            for round_ in range(args.rounds):
                pair = [lambda texts=texts: run_raw(raw, texts, args.max_tokens),
                        lambda texts=texts: run_http("ovrunner", server.base_url, MODEL, texts,
                                                     args.max_tokens, count_tokens)]  # fmt: skip
                if rival is not None:
                    pair.append(lambda texts=texts: run_http(
                        "llama-server", rival.base_url, MODEL, texts, args.max_tokens,
                        count_tokens, {"logit_bias": EOS_BIAS}))  # fmt: skip
                for measure in pair if round_ % 2 == 0 else reversed(pair):
                    levels.append(measure())
                    print(json.dumps(levels[-1].row()), flush=True)
            if level == 16:  # the memory comparison: the peaks so far, both servers
                memory["peak_at_16_mib"] = resident_mib(server.process.pid, "VmHWM")
                if rival is not None:
                    memory["llama_server_peak_at_16_mib"] = resident_mib(rival.process.pid, "VmHWM")
            if peer is not None:  # slow (it serializes requests), so measured once per level
                levels.append(run_http("llama-cpp", peer.base_url, MODEL, texts, args.max_tokens,
                                       count_tokens, {"logit_bias": EOS_BIAS}))  # fmt: skip
                print(json.dumps(levels[-1].row()), flush=True)
        # Levels run in increasing order, so the peak is the highest level's.
        memory["peak_mib"] = resident_mib(server.process.pid, "VmHWM")
        stats = httpx.get(f"{server.base_url}/engines/ps").json()["runners"][0]["stats"]
        memory["kv_cache_mib"] = round(stats["kv_cache_bytes"] / 2**20, 1)
        if rival is not None:
            memory["llama_server_peak_mib"] = resident_mib(rival.process.pid, "VmHWM")
        prefix = prefix_cache(server.base_url, count_tokens)
    finally:
        server.stop()
        for other in (peer, rival):
            if other is not None:
                other.stop()
        shutil.rmtree(store, ignore_errors=True)

    lookup = lookup_jobs(rounds=args.rounds)
    rows = combine(levels)
    paired = paired_ratios(levels)
    report = {"max_tokens": args.max_tokens, "rounds": args.rounds, "rows": rows,
              "paired_http_over_raw": paired, "prefix_cache": prefix, "memory": memory,
              "restart": restart, "lookup": lookup,
              "targets": targets(rows, paired, prefix, restart, lookup)}  # fmt: skip
    (RESULTS / "suite.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "suite.md").write_text(markdown(report))
    plot(rows, RESULTS / "suite.png")
    print(markdown(report))
    return 0


def combine(levels: list[Level]) -> list[dict[str, object]]:
    """One row per system and level: the median round's throughput, and latency percentiles
    over the streams of all its rounds."""
    rows = []
    for key in dict.fromkeys((lv.system, lv.concurrency) for lv in levels):
        rounds = [lv for lv in levels if (lv.system, lv.concurrency) == key]
        pooled = Level(key[0], key[1], 1.0, [s for lv in rounds for s in lv.streams]).row()
        pooled["tok_s"] = statistics.median(float(lv.row()["tok_s"]) for lv in rounds)  # type: ignore[arg-type]
        pooled["rounds"] = len(rounds)
        rows.append(pooled)
    return rows


def paired_ratios(levels: list[Level]) -> dict[int, list[float]]:
    """HTTP / raw tok/s of each round's back-to-back pair, by level: drift cancels in a pair."""
    ratios: dict[int, list[float]] = {}
    for level in dict.fromkeys(lv.concurrency for lv in levels):
        raw = [lv.row()["tok_s"] for lv in levels if lv.system == "raw" and lv.concurrency == level]
        http = [lv.row()["tok_s"] for lv in levels
                if lv.system == "ovrunner" and lv.concurrency == level]  # fmt: skip
        ratios[level] = [round(float(h) / float(r), 3) for h, r in zip(http, raw)]  # type: ignore[arg-type]
    return ratios


if __name__ == "__main__":
    sys.exit(main())
