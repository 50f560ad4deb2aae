"""A GGUF becomes compressed OpenVINO IR at import: every weight type, refusals, interruption.

The tiny model is rewritten in each quantization the `gguf` package writes; the real K-quants
(Q4_K, Q6_K, alongside Q5_0 and Q8_0) are converted by the real-model ring
(tests/integration/test_real_model.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
from pathlib import Path

import gguf
import numpy as np
import openvino
import openvino_genai
import pytest

from ovrunner import conversion
from ovrunner.engines import model_files
from ovrunner.engines.base import EngineTuning, ModelFormat
from ovrunner.engines.openvino import tokenizer_ir
from ovrunner.engines.openvino.gguf_to_ir import inspect_gguf
from ovrunner.engines.openvino.tuning import CHANNEL_WISE_INT8_ACTIVATION_GROUP, device_properties
from ovrunner.engines.openvino.weights import channel_wise_int8
from ovrunner.errors import (
    ConversionFailedError,
    ConversionMemoryError,
    InvalidRequestError,
    UnsupportedModelError,
)
from ovrunner.store import ModelStore


def context(model) -> int:  # type: ignore[no-untyped-def]
    return model_files.describe(model).context_window


def rewrite(source: Path, target: Path, qtype: gguf.GGMLQuantizationType,
            arch: str | None = None,
            attn_qtype: gguf.GGMLQuantizationType | None = None,
            ffn_qtype: gguf.GGMLQuantizationType | None = None) -> Path:  # fmt: skip
    """`source` with every matrix stored as `qtype` (the attention's as `attn_qtype`, the
    MLP's as `ffn_qtype` if given, and its architecture renamed)."""
    reader = gguf.GGUFReader(source)
    architecture = arch or str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(target, architecture)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        key = name.replace("llama.", f"{architecture}.") if arch else name
        sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        matrix_type = qtype
        if attn_qtype and ".attn_" in tensor.name:
            matrix_type = attn_qtype
        if ffn_qtype and ".ffn_" in tensor.name:
            matrix_type = ffn_qtype
        if values.ndim == 2 and matrix_type != gguf.GGMLQuantizationType.F16:
            packed = gguf.quants.quantize(values.astype(np.float32), matrix_type)
            writer.add_tensor(tensor.name, packed, raw_dtype=matrix_type)
        else:
            writer.add_tensor(tensor.name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def add(store: ModelStore, path: Path, name: str = "tiny", **options: object):  # type: ignore[no-untyped-def]
    settings = {"engine": "openvino", "source": "test", "weight_format": "auto",
                "context_window": context, **options}  # fmt: skip
    return conversion.add_model(store, path, name, **settings)  # type: ignore[arg-type]


def weight_types(ir_dir: Path, named: str = "") -> set[str]:
    """Element types of the weight matrices (not their scales, one per row or group), of
    those whose name holds `named` if given."""
    model = openvino.Core().read_model(ir_dir / "openvino_model.xml")
    return {op.get_output_element_type(0).get_type_name() for op in model.get_ops()
            if op.get_type_name() == "Constant" and len(shape := op.get_output_shape(0)) >= 2
            and shape[-1] > 1 and shape[0] > 1 and named in op.get_friendly_name()}  # fmt: skip


def generate(ir_dir: Path, properties: dict[str, object] | None = None) -> str:
    pipeline = openvino_genai.LLMPipeline(str(ir_dir), "CPU", **(properties or {}))
    config = openvino_genai.GenerationConfig(max_new_tokens=8, ignore_eos=True)
    return str(pipeline.generate("hello", config))


@pytest.mark.parametrize("qtype", ["F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"])
def test_every_weight_type_converts_to_an_ir_that_generates(
    tmp_path: Path, tiny_gguf: Path, qtype: str
) -> None:
    source = rewrite(tiny_gguf, tmp_path / f"tiny-{qtype}.gguf", gguf.GGMLQuantizationType[qtype])
    store = ModelStore(tmp_path / "store")
    statuses: list[conversion.ConversionStatus] = []
    model = add(store, source, on_progress=statuses.append)
    assert model.format is ModelFormat.OPENVINO_IR
    manifest = store.manifest("tiny")
    assert (manifest.source_format, manifest.weight_format) == ("gguf", "auto")
    assert manifest.context_window == context(model)
    # `auto` on the CPU keeps the source's bits: 4-bit blocks become int4 groups (unsigned,
    # with a zero point), 5 bits and more symmetric int8 per channel.
    assert weight_types(model.path) == ({"u4"} if qtype in ("Q4_0", "Q4_1") else {"i8"})
    assert model_files.has_tokenizer_ir(model.path)
    # The reader's tokenizer cut every input to 8,192 tokens: the converted one cuts none.
    assert tokenizer_ir.caps_in(model.path) == [tokenizer_ir.UNLIMITED]
    assert len(generate(model.path)) > 0
    stages = [s.stage for s in statuses]
    assert stages[0] == "dequantize" and stages[-1] == "done"
    assert {"build", "compress", "save"} <= set(stages)
    assert [p.name for p in store.models_dir.iterdir()] == ["tiny"]  # no staging left


def test_auto_keeps_a_mostly_4_bit_models_4_bit_tensors_and_an_explicit_format_is_every_weights(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    # 80% of the parameters in Q4_0, the attention in Q8_0: the mix of a Q4_K_M file.
    source = rewrite(tiny_gguf, tmp_path / "mixed.gguf", gguf.GGMLQuantizationType.Q4_0,
                     attn_qtype=gguf.GGMLQuantizationType.Q8_0)  # fmt: skip
    statuses: list[conversion.ConversionStatus] = []
    auto = add(ModelStore(tmp_path / "auto"), source, on_progress=statuses.append)
    compressing = next(s for s in statuses if s.stage == "compress")
    assert "int4 and int8" in compressing.describe()  # the progress says what it makes
    assert weight_types(auto.path, ".mlp.") == {"u4"}
    assert weight_types(auto.path, ".self_attn.") == {"i8"}
    assert len(generate(auto.path)) > 0
    assert not channel_wise_int8(auto.path / model_files.IR_XML)
    int8 = add(ModelStore(tmp_path / "int8"), source, weight_format="int8")
    assert weight_types(int8.path) == {"i8"}


def test_auto_makes_a_mostly_8_bit_model_int8_throughout(tmp_path: Path, tiny_gguf: Path) -> None:
    """A few 4-bit tensors (here the MLP, 40% of the parameters) among 8-bit ones stay 8-bit,
    so the CPU runs the model with its larger activation groups (tuning.py)."""
    source = rewrite(tiny_gguf, tmp_path / "mostly8.gguf", gguf.GGMLQuantizationType.Q8_0,
                     ffn_qtype=gguf.GGMLQuantizationType.Q4_0)  # fmt: skip
    statuses: list[conversion.ConversionStatus] = []
    auto = add(ModelStore(tmp_path), source, on_progress=statuses.append)
    assert next(s for s in statuses if s.stage == "compress").describe().endswith("int8")
    assert weight_types(auto.path) == {"i8"}
    assert channel_wise_int8(auto.path / model_files.IR_XML)
    properties = device_properties(EngineTuning(), "CPU", auto.path)
    assert properties["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == CHANNEL_WISE_INT8_ACTIVATION_GROUP
    assert device_properties(EngineTuning(), "GPU", auto.path).keys().isdisjoint(properties)
    chosen = device_properties(EngineTuning(dynamic_quantization_group_size=32), "CPU", auto.path)
    assert chosen["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == 32  # the operator's setting wins
    assert len(generate(auto.path, properties)) > 0


@pytest.mark.parametrize(("weight_format", "types"), [("int4", {"u4"}), ("f16", {"f16"})])
def test_the_weight_format_is_a_choice(
    tmp_path: Path, tiny_gguf: Path, weight_format: str, types: set[str]
) -> None:
    model = add(ModelStore(tmp_path), tiny_gguf, weight_format=weight_format)
    assert weight_types(model.path) == types
    assert len(generate(model.path)) > 0


def test_the_npu_gets_symmetric_channel_wise_int4(tmp_path: Path, tiny_gguf: Path) -> None:
    model = add(ModelStore(tmp_path), tiny_gguf, engine="openvino-npu")
    ir = openvino.Core().read_model(model.path / "openvino_model.xml")
    int4 = [op for op in ir.get_ops() if op.get_type_name() == "Constant"
            and op.get_output_element_type(0).get_type_name() == "i4"]  # fmt: skip
    assert int4, "symmetric int4 weights are signed"
    # Channel-wise: one scale per output row, no groups (a 2-D weight, not 3-D).
    assert all(len(op.get_output_shape(0)) == 2 for op in int4)


def test_an_unsupported_architecture_is_refused_at_import_naming_it(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    source = rewrite(tiny_gguf, tmp_path / "gemma.gguf", gguf.GGMLQuantizationType.F16,
                     arch="gemma3")  # fmt: skip
    store = ModelStore(tmp_path / "store")
    with pytest.raises(UnsupportedModelError) as refused:
        add(store, source)
    assert refused.value.status_code == 400
    assert "'gemma3'" in refused.value.message and "qwen2" in refused.value.message
    assert not store.models_dir.exists() or list(store.models_dir.iterdir()) == []


def test_a_weight_type_that_cannot_be_read_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(64)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((1, 40), dtype=np.uint8),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_1)  # fmt: skip
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match="Q8_1"):
        inspect_gguf(path)


def test_a_conversion_the_memory_cannot_hold_is_refused_before_it_starts(
    tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conversion, "available_memory", lambda: 1024)
    store = ModelStore(tmp_path)
    with pytest.raises(ConversionMemoryError, match="GiB") as refused:
        add(store, tiny_gguf)
    assert refused.value.status_code == 503 and not refused.value.retryable
    assert not store.models_dir.exists()


def test_an_interrupted_conversion_leaves_nothing_and_the_next_starts_clean(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    store = ModelStore(tmp_path)

    def interrupt(status: conversion.ConversionStatus) -> None:
        if status.stage == "build":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        add(store, tiny_gguf, on_progress=interrupt)
    assert list(store.models_dir.iterdir()) == []
    # A server killed mid-conversion leaves its staging directory, with no lock held.
    abandoned = store.staging_dir(".convert-")
    (abandoned / "converting.lock").touch()
    (abandoned / "model.work").mkdir()
    # One still converting (its lock held) is left alone.
    busy = store.staging_dir(".convert-")
    with (busy / "converting.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        add(store, tiny_gguf)
        assert sorted(p.name for p in store.models_dir.iterdir()) == [busy.name, "tiny"]


def test_a_failed_conversion_says_why_and_stores_nothing(tmp_path: Path, tiny_gguf: Path) -> None:
    broken = tmp_path / "broken.gguf"
    # A header that promises tensors the file does not hold: the converter fails reading them.
    broken.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    store = ModelStore(tmp_path / "store")
    with pytest.raises((ConversionFailedError, UnsupportedModelError)):
        add(store, broken)
    assert not store.models_dir.exists() or list(store.models_dir.iterdir()) == []


def test_an_existing_id_is_refused_before_any_work(tmp_path: Path, tiny_gguf: Path) -> None:
    store = ModelStore(tmp_path)
    add(store, tiny_gguf)
    with pytest.raises(InvalidRequestError, match="already exists"):
        add(store, tiny_gguf, on_progress=lambda s: pytest.fail("it converted"))
    config = json.loads((store.get("tiny").path / "config.json").read_text())
    assert config["converted_from"]["format"] == "gguf"


def test_an_openvino_ir_repository_serves_with_its_own_generation_defaults(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    """An `OpenVINO/...-int4-ov` repository as Intel publishes them (model, tokenizer and
    detokenizer IR, config.json, generation_config.json), pulled as it is: a request that
    leaves the temperature unset gets the one its authors ship (here greedy)."""
    from ovrunner import hub
    from ovrunner.engines.base import GenerationRequest, LoadConfig, SamplingParams
    from ovrunner.engines.openvino.batching import OpenVINOEngine
    from tests.engines.test_openvino_engine import collect
    from tests.support.hub_server import HubStandIn

    built = add(ModelStore(tmp_path / "build"), tiny_gguf, weight_format="int4")
    repo = tmp_path / "tiny-int4-ov"
    repo.mkdir()
    for file in built.path.iterdir():
        (repo / file.name).write_bytes(file.read_bytes())
    (repo / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": 2, "do_sample": False, "repetition_penalty": 1.0}))  # fmt: skip
    (repo / "README.md").write_text("not fetched")
    store = ModelStore(tmp_path / "store")
    with HubStandIn({"OpenVINO/tiny-int4-ov": repo}) as stand_in:
        model = hub.pull(store, "OpenVINO/tiny-int4-ov", endpoint=stand_in.endpoint,
                         context_window=context)  # fmt: skip
        assert "README.md" not in stand_in.downloads
    assert model_files.generation_defaults(model) == {"temperature": 0.0,
                                                      "repetition_penalty": 1.0}  # fmt: skip
    runner = OpenVINOEngine().load(model, LoadConfig(max_queue=4))
    try:

        def answer(sampling: SamplingParams) -> str:
            request = GenerationRequest(prompt="the quick", sampling=sampling)
            return "".join(d.text for d in asyncio.run(collect(runner, request)))  # type: ignore[arg-type]

        greedy = answer(SamplingParams(max_tokens=16, temperature=0))
        assert [answer(SamplingParams(max_tokens=16)) for _ in range(3)] == [greedy] * 3
    finally:
        runner.close()
