"""Assisted decoding on the real pipeline: prompt lookup and a draft model (the tiny model as
its own draft, since no smaller model of its family exists), against plain greedy decoding."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ovrunner.engines.base import LoadConfig, ModelRef, SamplingParams
from ovrunner.engines.openvino.batching import OpenVINOEngine, OpenVINORunner
from ovrunner.engines.stats import BatchingStats
from ovrunner.errors import InvalidRequestError
from tests.engines.test_openvino_engine import collect, raw

# Prompts that repeat themselves, so that prompt lookup finds n-grams to propose.
PROMPTS = ["the quick brown fox the quick brown fox the quick", "abc abc abc abc abc",
           "hello world, hello world, hello"]  # fmt: skip
GREEDY = SamplingParams(max_tokens=40, temperature=0)


@pytest.fixture(scope="module")
def model(tiny_model: ModelRef, tmp_path_factory: pytest.TempPathFactory) -> ModelRef:
    directory = tmp_path_factory.mktemp("assisted")
    copy = directory / tiny_model.path.name
    copy.write_bytes(tiny_model.path.read_bytes())
    return replace(tiny_model, path=copy)


@pytest.fixture(scope="module")
def plain(model: ModelRef) -> Iterator[OpenVINORunner]:
    runner = OpenVINOEngine().load(model, LoadConfig())
    assert isinstance(runner, OpenVINORunner)
    yield runner
    runner.close()


def answers(runner: OpenVINORunner) -> list[str]:
    return ["".join(d.text for d in asyncio.run(collect(runner, raw(p, GREEDY)))) for p in PROMPTS]


@pytest.mark.parametrize("decoding", ["prompt_lookup", "draft"])
def test_assisted_greedy_answers_are_the_plain_ones(
    decoding: str, model: ModelRef, plain: OpenVINORunner, tmp_path: Path
) -> None:
    expected = answers(plain)  # the plain runner loaded first, so the IR the draft needs exists
    assisted_model = (
        replace(model, prompt_lookup=True)
        if decoding == "prompt_lookup"
        else replace(model, draft=model)
    )
    runner = OpenVINOEngine().load(assisted_model, LoadConfig())
    try:
        assert answers(runner) == expected
        stats = runner.stats()
        assert isinstance(stats, BatchingStats)
        assert stats.decoding == assisted_model.decoding
        # Steps past the first token proposed candidates.
        assert stats.assisted_steps > 0 and stats.assisted_proposed > 0
        accepted = stats.assisted_tokens - stats.assisted_steps
        assert 0 <= accepted <= stats.assisted_proposed
        if decoding == "draft":  # the model is its own draft: it accepts nearly everything
            assert accepted / stats.assisted_proposed > 0.8
        # (This random model seldom repeats its prompt, so lookup's candidates are rejected
        # here; tests/integration/test_worker.py sees SmolLM2 accept them in a summary.)
        # One choice per request only: n > 1 is refused, naming `n`.
        sampled = SamplingParams(max_tokens=4, temperature=0.8, n=2)
        with pytest.raises(InvalidRequestError) as refused:
            asyncio.run(collect(runner, raw("hello", sampled)))
        assert refused.value.param == "n"
    finally:
        runner.close()
