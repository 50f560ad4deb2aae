"""What the benchmarks share: the model, the prompts and the raw pipeline they compare with.

`RawPipeline` is the practical limit: the engine's own `ContinuousBatchingPipeline` (opened
with the engine's code, `pipeline.open_pipeline`, so its scheduler settings cannot drift from
the server's) stepped directly in this process, no server, no Python per token beyond one
read per handle per step. `bench.suite` measures the server against it, pair by pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ovrunner.engines.base import ModelFormat, ModelRef
from ovrunner.engines.openvino.pipeline import PipelineSpec, open_pipeline

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
    """The engine's pipeline, stepped directly: the limit the server is measured against."""

    def __init__(self, model_dir: Path, gguf: Path) -> None:
        import openvino_genai as genai

        self.genai = genai
        model = ModelRef(MODEL, gguf, ModelFormat.GGUF, "openvino")
        # The server's first load saved its IR in `model_dir`: the same files open here.
        assert gguf.parent == model_dir, "the IR lies beside the GGUF in the store"
        self.pipe = open_pipeline(PipelineSpec(model, "CPU", kv_cache_gb=1.0, cache_dir=None))
        self.tokenizer = self.pipe.get_tokenizer()

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
