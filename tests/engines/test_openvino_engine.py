"""The `openvino` engine on the real OpenVINO GenAI pipeline, with the tiny test model."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from pathlib import Path

import pytest

from ovrunner.engines import model_files
from ovrunner.engines.base import (
    EngineStatus,
    EngineTuning,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
    LoadConfig,
    ModelFormat,
    ModelRef,
    SamplingParams,
)
from ovrunner.engines.openvino.batching import OpenVINOEngine, OpenVINORunner
from ovrunner.engines.openvino.common import ir_dir_of
from ovrunner.engines.openvino.generation import import_genai
from ovrunner.engines.openvino.tuning import device_properties
from ovrunner.engines.tiny_model import CONTEXT_LENGTH
from ovrunner.errors import ContextLengthExceededError, EngineUnavailableError

GREEDY = SamplingParams(max_tokens=24, temperature=0)


def raw(prompt: str, sampling: SamplingParams = GREEDY) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, sampling=sampling)


async def collect(runner: OpenVINORunner, request: GenerationRequest) -> list[GenerationDelta]:
    async with aclosing(runner.generate(request)) as deltas:
        return [delta async for delta in deltas]


async def wait_until_idle(runner: OpenVINORunner, timeout: float = 5.0) -> float:
    """Seconds until the pipeline holds no unfinished request."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        stats = runner.stats()
        if stats.running == 0 and not stats.pipeline_busy:
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"the pipeline still holds requests: {runner.stats()}")


def test_event_loops_in_two_threads_share_one_runner(tiny_runner: OpenVINORunner) -> None:
    """Engine messages are read on the loop that submitted last; the other loop's jobs are
    handed over to it, so both streams complete, each with exactly its own tokens.

    Not claimed: that each text equals the text of the same request run alone. Two greedy
    requests batched together (or one served from the other's prefix cache) differ from one
    alone on this random model even on one event loop, from the second token on: its logits
    have near-ties that the batched kernels' rounding decides. Different lengths per thread
    show instead that no delta reaches the wrong stream."""
    import threading

    results: dict[int, list[GenerationDelta]] = {}
    both_started = threading.Barrier(2)

    def in_a_thread(tokens: int) -> None:
        request = raw("the quick brown", SamplingParams(max_tokens=tokens, temperature=0,
                                                        ignore_eos=True, logprobs=True))  # fmt: skip
        both_started.wait(10)
        results[tokens] = asyncio.run(collect(tiny_runner, request))

    threads = [threading.Thread(target=in_a_thread, args=(n,)) for n in (60, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for tokens, deltas in results.items():
        counts = [d.completion_tokens for d in deltas]
        assert counts == sorted(set(counts)) and counts[-1] == tokens
        assert sum(len(d.logprobs) for d in deltas) == tokens  # each token arrived once
        assert deltas[-1].finish_reason is FinishReason.LENGTH
    assert sorted(results) == [60, 200]


def test_status_reports_version_and_devices() -> None:
    state = OpenVINOEngine().status()
    assert state.status is EngineStatus.RUNNING
    assert "openvino-genai 20" in state.detail and "CPU" in state.detail


def test_disk_usage_is_what_the_openvino_packages_take_on_disk() -> None:
    import importlib.util

    on_disk = 0
    for package in ("openvino", "openvino_genai", "openvino_tokenizers"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations
        for location in spec.submodule_search_locations:
            on_disk += sum(p.stat().st_size for p in Path(location).rglob("*")
                           if p.is_file() and "__pycache__" not in p.parts)  # fmt: skip
    usage = OpenVINOEngine().disk_usage()
    assert on_disk > 100 << 20
    assert abs(usage - on_disk) < on_disk * 0.02  # the RECORDs also list dist-info and scripts


def test_describe_reads_context_window_without_loading(tiny_model: ModelRef) -> None:
    info = OpenVINOEngine().describe(tiny_model)
    assert info.context_window == CONTEXT_LENGTH
    assert info.architecture == "llama"


def test_absent_device_is_a_clear_error(tiny_model: ModelRef) -> None:
    with pytest.raises(EngineUnavailableError, match="device NPU is not available"):
        OpenVINOEngine().load(tiny_model, LoadConfig(device="NPU"))


def test_generate_returns_text_counts_and_finish_reason(tiny_runner: OpenVINORunner) -> None:
    deltas = asyncio.run(collect(tiny_runner, raw("the quick brown")))
    text = "".join(d.text for d in deltas)
    assert text.strip()
    last = deltas[-1]
    assert last.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    assert 1 <= last.completion_tokens <= 24
    assert last.prompt_tokens == len(tiny_runner.encode(raw("the quick brown")).data[0])
    # The output varies: the tiny model's weights are chosen so greedy decoding does not loop
    # on one token, which would hide joining errors.
    assert len(set(text)) > 5


def test_stream_deltas_join_to_the_full_text(tiny_runner: OpenVINORunner) -> None:
    request = raw("once upon a time", SamplingParams(max_tokens=40, temperature=0, ignore_eos=True))
    deltas = asyncio.run(collect(tiny_runner, request))
    assert len([d for d in deltas if d.text]) > 3
    assert deltas[-1].completion_tokens == 40
    assert deltas[-1].finish_reason is FinishReason.LENGTH
    # The reference: the same greedy generation through the pipeline's own batch API, in the
    # precision the engine computes in (bf16 would part from it on a bf16-capable CPU).
    genai = pytest.importorskip("openvino_genai")
    path = tiny_runner_model_path(tiny_runner)
    ir_dir = ir_dir_of(ModelRef("tiny", path, ModelFormat.GGUF, "openvino"))
    pipe = genai.LLMPipeline(str(path), "CPU", **device_properties(EngineTuning(), "CPU", ir_dir))
    config = genai.GenerationConfig(max_new_tokens=40, ignore_eos=True, apply_chat_template=False)
    expected = pipe.generate("once upon a time", config)
    assert "".join(d.text for d in deltas) == str(expected)


def tiny_runner_model_path(runner: OpenVINORunner) -> Path:
    return runner.model_path


def test_chat_is_templated_once(tiny_runner: OpenVINORunner) -> None:
    chat = GenerationRequest(messages=[{"role": "user", "content": "hello"}], sampling=GREEDY)
    rendered = tiny_runner.render_prompt(chat)
    assert rendered.count("<|im_start|>user") == 1
    assert rendered.endswith("<|im_start|>assistant\n")
    chat_tokens = asyncio.run(collect(tiny_runner, chat))[-1].prompt_tokens
    raw_tokens = asyncio.run(collect(tiny_runner, raw(rendered)))[-1].prompt_tokens
    assert chat_tokens == raw_tokens  # the raw prompt was not templated a second time


def test_closing_the_stream_cancels_the_request(tiny_runner: OpenVINORunner) -> None:
    """Counted in pipeline steps, not seconds: the tiny model would finish 400 tokens within
    any time limit a loaded machine allows, so only the steps show the cancel."""

    async def scenario() -> int:
        request = raw("hello world", SamplingParams(max_tokens=400, temperature=0, ignore_eos=True))
        deltas = tiny_runner.generate(request)
        received = 0
        async for delta in deltas:
            received += delta.completion_tokens > 0
            if received == 3:
                break
        steps = tiny_runner.stats().steps
        await deltas.aclose()
        await wait_until_idle(tiny_runner, timeout=30)
        return tiny_runner.stats().steps - steps

    steps_after_close = asyncio.run(scenario())
    assert steps_after_close < 200  # without the cancel, ~390 more steps
    assert tiny_runner.stats().admitted == 0


def test_eight_concurrent_requests_complete_and_share_steps(tiny_runner: OpenVINORunner) -> None:
    prompts = [f"request {i}: the quick brown fox" for i in range(8)]
    sampling = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)

    async def scenario() -> list[list[GenerationDelta]]:
        return await asyncio.gather(*(collect(tiny_runner, raw(p, sampling)) for p in prompts))

    steps_before = tiny_runner.stats().steps
    results = asyncio.run(scenario())
    assert all(r[-1].completion_tokens == 32 for r in results)
    assert all(r[-1].finish_reason is FinishReason.LENGTH for r in results)
    stats = tiny_runner.stats()
    assert stats.max_batch > 1
    # Batched: far fewer steps than 8 requests x 32 tokens run one after another.
    assert stats.steps - steps_before < 8 * 32 / 2


def test_prompt_beyond_context_is_refused(tiny_runner: OpenVINORunner) -> None:
    request = raw("hello world " * 400, SamplingParams(max_tokens=4))  # about 800 tokens
    with pytest.raises(ContextLengthExceededError, match=str(CONTEXT_LENGTH)):
        asyncio.run(collect(tiny_runner, request))


def test_a_max_tokens_beyond_the_window_is_bounded_by_it(tiny_runner: OpenVINORunner) -> None:
    request = raw("hello " * 10, SamplingParams(max_tokens=CONTEXT_LENGTH, ignore_eos=True))
    deltas = asyncio.run(collect(tiny_runner, request))
    assert deltas[-1].finish_reason is FinishReason.LENGTH
    assert deltas[-1].prompt_tokens + deltas[-1].completion_tokens == CONTEXT_LENGTH


def test_first_load_saves_ir_and_later_loads_use_it(tiny_model: ModelRef, tmp_path: Path) -> None:
    copy = tmp_path / "m.gguf"
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef("m", copy, ModelFormat.GGUF, "openvino")
    OpenVINOEngine().load(model, LoadConfig()).close()
    assert (tmp_path / "openvino_model.xml").is_file()
    # The tokenizer IR too, so a warm start builds nothing from the GGUF; no staging is left.
    assert model_files.has_tokenizer_ir(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    genai = import_genai()
    built, saved = genai.Tokenizer(str(copy)), genai.Tokenizer(str(tmp_path))
    for text in ("the quick brown fox", "  spaces\n\ttabs", "ünïcödé 🙂", "<|im_start|>user"):
        ids = built.encode(text).input_ids.data.tolist()
        assert saved.encode(text).input_ids.data.tolist() == ids
        assert saved.decode(ids[0]) == built.decode(ids[0])
    assert saved.chat_template == built.chat_template
    # A warm start (saved IR) answers deterministically. Not compared with the cold start:
    # the pipeline converted in memory and the one read from the saved IR differ in the last
    # bits, and greedy answers of this random model part after a dozen tokens.
    answers = []
    for _ in range(2):
        runner = OpenVINOEngine().load(model, LoadConfig())
        try:
            answers.append("".join(d.text for d in asyncio.run(collect(runner, raw("the quick")))))
        finally:
            runner.close()
    assert answers[0] and answers[0] == answers[1]


def test_a_damaged_tokenizer_ir_is_built_again(tiny_model: ModelRef, tmp_path: Path) -> None:
    copy = tmp_path / "m.gguf"
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef("m", copy, ModelFormat.GGUF, "openvino")
    OpenVINOEngine().load(model, LoadConfig()).close()
    (tmp_path / model_files.TOKENIZER_XML).write_text("<net broken")
    runner = OpenVINOEngine().load(model, LoadConfig())
    try:
        assert "".join(d.text for d in asyncio.run(collect(runner, raw("the quick"))))
    finally:
        runner.close()
    assert "broken" not in (tmp_path / model_files.TOKENIZER_XML).read_text()


def test_dynamic_quantization_off_reaches_the_pipeline(
    tiny_model: ModelRef, tmp_path: Path
) -> None:
    """`dynamic_quantization_group_size = 0` is passed to the engine's pipeline, which accepts
    it (the CPU plugin refuses a property it does not know): its greedy text is that of
    OpenVINO GenAI's own pipeline compiled with the same properties (activation quantization
    moves the numbers a little, so the reference must be compiled alike)."""
    copy = tmp_path / "m.gguf"
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef("m", copy, ModelFormat.GGUF, "openvino")
    tuning = EngineTuning(dynamic_quantization_group_size=0)
    runner = OpenVINOEngine().load(model, LoadConfig(tuning=tuning))
    assert isinstance(runner, OpenVINORunner)
    request = raw("once upon a time", SamplingParams(max_tokens=40, temperature=0, ignore_eos=True))
    try:
        text = "".join(d.text for d in asyncio.run(collect(runner, request)))
        genai = pytest.importorskip("openvino_genai")
        pipe = genai.LLMPipeline(str(runner.model_path), "CPU", **device_properties(tuning, "CPU"))
    finally:
        runner.close()
    config = genai.GenerationConfig(max_new_tokens=40, ignore_eos=True, apply_chat_template=False)
    assert text == str(pipe.generate("once upon a time", config))


def test_an_admission_window_starts_a_burst_in_one_step(
    tiny_model: ModelRef, tmp_path: Path
) -> None:
    """Two one-token requests 20 ms apart into an idle engine with a 300 ms window share
    their first step (each ends at its first token, so no later step could join them)."""
    copy = tmp_path / "m.gguf"
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef("m", copy, ModelFormat.GGUF, "openvino")
    config = LoadConfig(tuning=EngineTuning(admission_window_ms=300))
    runner = OpenVINOEngine().load(model, config)
    assert isinstance(runner, OpenVINORunner)
    one = SamplingParams(max_tokens=1, temperature=0)

    async def burst() -> list[list[GenerationDelta]]:
        first = asyncio.ensure_future(collect(runner, raw("the quick", one)))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(collect(runner, raw("a lazy dog", one)))
        return [await first, await second]

    try:
        for deltas in asyncio.run(burst()):
            assert deltas[-1].completion_tokens == 1
        assert runner.stats().max_batch == 2
    finally:
        runner.close()


def test_the_kv_cache_is_sized_from_the_window_as_planned(
    tiny_model: ModelRef, tmp_path: Path
) -> None:
    """The pipeline reserves exactly the planned cache: the plan's block size and its count
    of elements per token (read from the graph) are OpenVINO GenAI's own. f16, so that the
    bytes per element are known on any CPU."""
    from ovrunner.engines.openvino import kv_cache

    copy = tmp_path / "m.gguf"
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef("m", copy, ModelFormat.GGUF, "openvino")
    tuning = EngineTuning(kv_cache_precision="f16")
    elements = kv_cache.elements_per_token_gguf(copy)
    for _ in range(2):  # built from the GGUF, then from the IR the first load saved
        runner = OpenVINOEngine().load(model, LoadConfig(tuning=tuning))
        try:
            asyncio.run(collect(runner, raw("the quick")))
            reserved = runner.stats().kv_cache_bytes
        finally:
            runner.close()
        assert kv_cache.elements_per_token(tmp_path / model_files.IR_XML) == elements
        planned = kv_cache.plan(elements=elements, window=CONTEXT_LENGTH, device="CPU",
                                precision="f16", size_gb=None, available=None)  # fmt: skip
        assert reserved == planned.bytes, (reserved, planned)


def test_a_loaded_engine_does_not_hold_the_weight_files_pages(
    tiny_model: ModelRef, tmp_path: Path
) -> None:
    """The first inference ran at load (the CPU plugin repacked the weights on it) with the
    weight file's pages shed: the engine process holds the repacked copy, not the file too."""
    copy = tmp_path / "m.gguf"
    copy.write_bytes(tiny_model.path.read_bytes())
    model = ModelRef("m", copy, ModelFormat.GGUF, "openvino")
    OpenVINOEngine().load(model, LoadConfig()).close()  # saves the IR the next load maps
    runner = OpenVINOEngine().load(model, LoadConfig())
    assert isinstance(runner, OpenVINORunner)
    try:
        weights = str((tmp_path / model_files.IR_BIN).resolve())
        resident_kib, mapped_kib, inside = 0, 0, False
        with open(f"/proc/{runner.stats().engine_pid}/smaps") as smaps:
            for line in smaps:
                fields = line.split()
                if ":" not in fields[0]:  # a mapping's first line: range, perms, ..., path
                    inside = len(fields) == 6 and fields[5] == weights
                elif inside and fields[0] == "Rss:":
                    resident_kib += int(fields[1])
                elif inside and fields[0] == "Size:":
                    mapped_kib += int(fields[1])
    finally:
        runner.close()
    assert mapped_kib > 0, "the engine maps its weight file"
    assert resident_kib < mapped_kib / 2, (resident_kib, mapped_kib)
