"""Throughput: the HTTP server against the raw OpenVINO GenAI pipeline, side by side.

One process, one run: the raw `ContinuousBatchingPipeline` runs in this process on the same
model files, prompts and settings as an `ovrunner serve` subprocess. Each round measures the
two back to back, in alternating order, and yields one HTTP/raw ratio: this machine's speed
drifts by up to 2.5x over minutes, and a paired ratio cancels the drift that a ratio of two
separate medians would keep. The report gives, per concurrency level, the median tokens/s
of each and the median of the paired ratios.

    python -m bench.throughput [--levels 1 8] [--rounds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from tests.support.server import ServerProcess

MODEL = "smollm2-135m"
TOPICS = ["a lighthouse keeper", "a robot learning to paint", "the first city on Mars",
          "a dragon who hates gold", "two rival bakers", "a lost satellite", "an old map",
          "a talking cat", "the last tree on earth", "a time traveller's mistake",
          "a library that never closes", "a chess match against a ghost", "a storm at sea",
          "the quietest village", "a broken clock", "a detective who cannot see"]  # fmt: skip


def prompts(count: int) -> list[str]:
    return [f"Write a short story about {TOPICS[i % len(TOPICS)]}." for i in range(count)]


@dataclass
class Sample:
    system: str
    concurrency: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


class RawPipeline:
    """The practical limit: the pipeline stepped directly, no server, no Python per token
    beyond one read per handle per step."""

    def __init__(self, model_dir: Path, gguf: Path) -> None:
        import openvino_genai as genai

        self.genai = genai
        scheduler = genai.SchedulerConfig()
        scheduler.enable_prefix_caching = True
        scheduler.cache_size = 1
        tokenizer = genai.Tokenizer(str(gguf))
        self.pipe = genai.ContinuousBatchingPipeline(str(model_dir), tokenizer, scheduler, "CPU")
        self.tokenizer = tokenizer

    def run(self, texts: list[str], max_tokens: int) -> Sample:
        config = self.genai.GenerationConfig(
            max_new_tokens=max_tokens, ignore_eos=True, apply_chat_template=False
        )
        rendered = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": t}], add_generation_prompt=True
            )
            for t in texts
        ]
        started = time.perf_counter()
        handles = [self.pipe.add_request(i, p, config) for i, p in enumerate(rendered)]
        tokens = 0
        while self.pipe.has_non_finished_requests():
            self.pipe.step()
            for handle in handles:
                if handle.can_read():
                    tokens += sum(len(o.generated_ids) for o in handle.read().values())
        return Sample("raw", len(texts), tokens, time.perf_counter() - started)


async def _stream_one(host: str, port: int, text: str, max_tokens: int) -> int:
    """One streamed chat completion over a bare HTTP/1.1 connection.

    The load generator shares the machine's two cores with the server, and a full HTTP
    client (httpx parses every chunk of the chunked body in Python) costs the server about 6%
    of a core at 8 streams. This reads raw bytes and parses only the usage chunk at the end.
    """
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}],
                       "stream": True, "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True, "stream_options": {"include_usage": True}}).encode()  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (host.encode(), len(body), body))  # fmt: skip
    tail = b""
    while chunk := await reader.read(65536):
        tail = (tail + chunk)[-4096:]
    writer.close()
    # The last JSON event is the usage chunk; a failed request has none and raises here.
    start = tail.rfind(b'data: {"id"')
    usage = json.loads(tail[start + 6 : tail.index(b"\n", start)])["usage"]
    return int(usage["completion_tokens"])


async def _http_run(base_url: str, texts: list[str], max_tokens: int) -> Sample:
    url = httpx.URL(base_url)
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(_stream_one(url.host, url.port or 80, t, max_tokens) for t in texts)
    )
    return Sample("http", len(texts), sum(counts), time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("bench/results/throughput.json"))
    args = parser.parse_args(argv)

    store = Path(tempfile.mkdtemp(prefix="ovrunner-bench-"))
    server = ServerProcess(store, "--preload").wait_ready()
    try:
        model_dir = store / "models" / MODEL  # the IR the server's first load saved
        raw = RawPipeline(model_dir, model_dir / "model.gguf")
        samples: list[Sample] = []
        for level in args.levels:
            texts = prompts(level)
            raw.run(texts, 8)  # warm both paths at this level before measuring
            asyncio.run(_http_run(server.base_url, texts, 8))
            for round_ in range(args.rounds):
                pair = [
                    lambda texts=texts: raw.run(texts, args.max_tokens),
                    lambda texts=texts: asyncio.run(
                        _http_run(server.base_url, texts, args.max_tokens)
                    ),
                ]
                for measure in pair if round_ % 2 == 0 else reversed(pair):
                    samples.append(measure())
    finally:
        server.stop()

    report = summarize(samples, args.levels)
    print(markdown(report, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"report": report, "samples": [asdict(s) for s in samples]}, indent=2)
    )
    return 0


def summarize(samples: list[Sample], levels: list[int]) -> list[dict[str, float]]:
    rows = []
    for level in levels:
        raw = [s.tokens_per_s for s in samples if s.system == "raw" and s.concurrency == level]
        http = [s.tokens_per_s for s in samples if s.system == "http" and s.concurrency == level]
        ratios = [h / r for h, r in zip(http, raw)]  # the same round's pair
        rows.append({"concurrency": level, "raw_tok_s": round(statistics.median(raw), 1),
                     "http_tok_s": round(statistics.median(http), 1),
                     "http_over_raw": round(statistics.median(ratios), 3),
                     "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)})  # fmt: skip
    return rows


def markdown(report: list[dict[str, float]], args: argparse.Namespace) -> str:
    lines = [f"max_tokens={args.max_tokens}, rounds={args.rounds} (medians), SmolLM2-135M Q4_1, CPU",
             "", "| streams | raw pipeline tok/s | ovrunner HTTP tok/s | HTTP / raw (paired) | range |",
             "| ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for row in report:
        lines.append(f"| {row['concurrency']} | {row['raw_tok_s']} | {row['http_tok_s']} | "
                     f"{row['http_over_raw']} | {row['ratio_min']}-{row['ratio_max']} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
