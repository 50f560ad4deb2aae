"""The `openvino-npu` engine's bounds, run on CPU with the tiny test model (no NPU here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from ovrunner.engines.base import (
    EngineStatus,
    FinishReason,
    GenerationRequest,
    LoadConfig,
    ModelRef,
    OutputConstraint,
    SamplingParams,
)
from ovrunner.engines.openvino.npu import NpuLimits, NpuRunner, OpenVINONpuEngine
from ovrunner.errors import (
    EngineUnavailableError,
    InvalidValueError,
    PromptTooLongError,
    UnsupportedParameterError,
)

GREEDY = SamplingParams(max_tokens=16, temperature=0)


@pytest.fixture(scope="module")
def npu_runner(
    tiny_model: ModelRef, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NpuRunner]:
    directory: Path = tmp_path_factory.mktemp("npu")
    copy = directory / tiny_model.path.name
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef(tiny_model.id, copy, tiny_model.format, "openvino")
    engine = OpenVINONpuEngine(tiny_model.id, device="CPU", limits=NpuLimits(max_prompt_len=32))
    runner = engine.load(model, LoadConfig(max_queue=8))
    assert isinstance(runner, NpuRunner)
    yield runner
    runner.close()


async def collect(runner: NpuRunner, request: GenerationRequest) -> list:  # type: ignore[type-arg]
    async with aclosing(runner.generate(request)) as deltas:
        return [delta async for delta in deltas]


def test_generates_with_counts_and_finish_reason(npu_runner: NpuRunner) -> None:
    deltas = asyncio.run(
        collect(npu_runner, GenerationRequest(prompt="the quick brown", sampling=GREEDY))
    )
    last = deltas[-1]
    assert "".join(d.text for d in deltas)
    assert last.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert 0 < last.completion_tokens <= 16 and last.prompt_tokens > 0


def test_a_prompt_over_the_cap_is_refused_not_truncated(npu_runner: NpuRunner) -> None:
    long_prompt = " ".join(["word"] * 200)
    with pytest.raises(PromptTooLongError) as caught:
        asyncio.run(collect(npu_runner, GenerationRequest(prompt=long_prompt, sampling=GREEDY)))
    assert "32" in caught.value.message and caught.value.status_code == 400


@pytest.mark.parametrize(
    ("sampling", "error", "param"),
    [(SamplingParams(max_tokens=257), InvalidValueError, "max_tokens"),
     (SamplingParams(n=2), UnsupportedParameterError, "n"),
     (SamplingParams(logprobs=True), UnsupportedParameterError, "logprobs")],
)  # fmt: skip
def test_bounds_are_400s(sampling: SamplingParams, error: type, param: str) -> None:
    """Declared as the engine's capabilities, checked before any runner is leased."""
    engine = OpenVINONpuEngine("tiny", device="CPU", limits=NpuLimits(max_prompt_len=32))
    with pytest.raises(error) as caught:
        asyncio.run(engine.validate(GenerationRequest(prompt="hi", sampling=sampling)))
    assert caught.value.param == param  # type: ignore[attr-defined]
    assert caught.value.status_code == 400  # type: ignore[attr-defined]


def test_generations_are_serialized(npu_runner: NpuRunner) -> None:
    sampling = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)

    async def scenario() -> list[tuple[float, float]]:
        async def timed(i: int) -> tuple[float, float]:
            first = None
            async with aclosing(npu_runner.generate(
                    GenerationRequest(prompt=f"request {i}", sampling=sampling))) as deltas:  # fmt: skip
                async for _ in deltas:
                    first = first or time.monotonic()
            assert first is not None
            return first, time.monotonic()

        return list(await asyncio.gather(*(timed(i) for i in range(3))))

    spans = sorted(asyncio.run(scenario()))
    # Each generation starts producing only after the previous one has ended.
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end


def test_closing_the_stream_frees_the_device(npu_runner: NpuRunner) -> None:
    long = SamplingParams(max_tokens=256, temperature=0, ignore_eos=True)

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await collect(npu_runner, GenerationRequest(prompt="go", sampling=long))
        whole = loop.time() - started
        started = loop.time()
        async with aclosing(
            npu_runner.generate(GenerationRequest(prompt="go", sampling=long))
        ) as deltas:
            async for _ in deltas:
                break
        closed = loop.time() - started  # aclose returns once the pipeline has stopped
        assert not npu_runner.stats().running
        await collect(npu_runner, GenerationRequest(prompt="next", sampling=GREEDY))
        return whole, closed

    # Relative, not absolute: both scale with the machine's load alike. Without the cancel,
    # closing would wait for the rest of the 256 tokens (measured: about half of them).
    whole, closed = asyncio.run(scenario())
    assert closed < whole / 10, (whole, closed)  # measured: ~4 ms against ~220 ms
    assert npu_runner.stats().admitted == 0


def test_structured_output_is_enforced(npu_runner: NpuRunner) -> None:
    schema = '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}'
    sampling = SamplingParams(
        max_tokens=48, temperature=0, constraint=OutputConstraint.json_schema(schema)
    )
    deltas = asyncio.run(collect(npu_runner, GenerationRequest(prompt="{", sampling=sampling)))
    text = "".join(d.text for d in deltas)
    assert text.lstrip().startswith("{") and '"a"' in text


def test_serves_only_its_model(tiny_model: ModelRef) -> None:
    engine = OpenVINONpuEngine(tiny_model.id, device="CPU")
    assert engine.serves(tiny_model)
    other = ModelRef("other", tiny_model.path, tiny_model.format, "openvino")
    assert not engine.serves(other)


def test_an_absent_npu_is_a_clear_error(tiny_model: ModelRef) -> None:
    engine = OpenVINONpuEngine(tiny_model.id, device="NPU")
    state = engine.status()
    assert state.status is EngineStatus.ERROR and "NPU" in state.detail
    with pytest.raises(EngineUnavailableError, match="NPU"):
        engine.load(tiny_model, LoadConfig())
