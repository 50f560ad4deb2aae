"""Pulling from a loopback stand-in for the Hugging Face Hub (the real hub is unreachable here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovrunner import hub
from ovrunner.engines import model_files
from ovrunner.errors import InvalidValueError, ModelNotFoundError, UnsupportedModelError
from ovrunner.store import ModelStore
from tests.support.hub_server import HubStandIn


def context(model) -> int:  # type: ignore[no-untyped-def]
    return model_files.describe(model).context_window


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "openvino_model.xml").write_text("<net/>" * 100)
    # Larger than huggingface_hub's 10 MiB download chunk, so a cut download leaves a part.
    (root / "openvino_model.bin").write_bytes(bytes(range(256)) * 100_000)
    (root / "openvino_tokenizer.xml").write_text("<tok/>")
    (root / "config.json").write_text('{"max_position_embeddings": 4096, "model_type": "llama"}')
    (root / "README.md").write_text("not needed")
    (root / "model.safetensors").write_bytes(b"\0" * 1000)
    return root


def test_pull_resumes_a_cut_download_and_fetches_only_what_the_engine_needs(
    tmp_path: Path, repo: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "store")
    with HubStandIn({"acme/tiny-ov": repo}, cut_first_download="openvino_model.bin") as stand_in:
        model = hub.pull(store, "acme/tiny-ov", endpoint=stand_in.endpoint, context_window=context)
    # The connection dropped after the first 10 MiB chunk; the client asked for the rest.
    assert stand_in.ranges == [("openvino_model.bin", "bytes=10485760-")]
    files = sorted(p.name for p in model.path.iterdir())
    assert files == ["config.json", "openvino_model.bin", "openvino_model.xml",
                     "openvino_tokenizer.xml"]  # fmt: skip
    assert (model.path / "openvino_model.bin").read_bytes() == (
        repo / "openvino_model.bin"
    ).read_bytes()
    assert store.summary("acme/tiny-ov", context)["context_window"] == 4096
    assert store.manifest("acme/tiny-ov").source == "hf:acme/tiny-ov"
    assert list(store.models_dir.glob(".pull-*")) == []  # no staging directory is left
    assert "Fetching" in capfd.readouterr().err  # the progress bar


def test_pull_one_gguf_file(tmp_path: Path, tiny_gguf: Path) -> None:
    root = tmp_path / "gguf-repo"
    root.mkdir()
    (root / "tiny.Q8_0.gguf").write_bytes(tiny_gguf.read_bytes())
    (root / "tiny.F16.gguf").write_bytes(tiny_gguf.read_bytes())
    store = ModelStore(tmp_path / "store")
    with HubStandIn({"acme/tiny-gguf": root}) as stand_in:
        model = hub.pull(store, "acme/tiny-gguf", model_id="tiny", filename="tiny.Q8_0.gguf",
                         endpoint=stand_in.endpoint, context_window=context)  # fmt: skip
        assert stand_in.downloads == ["tiny.Q8_0.gguf"]
    assert (model.path / "openvino_model.xml").is_file()  # converted at the pull


def test_an_unknown_repository_is_a_404(tmp_path: Path) -> None:
    with HubStandIn({}) as stand_in, pytest.raises(ModelNotFoundError):
        hub.pull(ModelStore(tmp_path), "acme/nothing", endpoint=stand_in.endpoint,
                 context_window=context)  # fmt: skip


QWEN_FILES = ["README.md", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
              "qwen2.5-coder-0.5b-instruct-q8_0.gguf", "qwen2.5-coder-0.5b-instruct-fp16.gguf",
              "qwen2.5-coder-0.5b-instruct-q4_0.gguf"]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "picked"),
    [("Q4_K_M", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
     ("q8_0", "qwen2.5-coder-0.5b-instruct-q8_0.gguf"),
     ("qwen2.5-coder-0.5b-instruct-q4_0.gguf", "qwen2.5-coder-0.5b-instruct-q4_0.gguf")],
)  # fmt: skip
def test_a_quantization_label_picks_its_file(label: str, picked: str) -> None:
    assert hub.pick_file("Qwen/x-GGUF", QWEN_FILES, label) == picked


def test_a_label_that_names_no_file_lists_what_the_repository_holds() -> None:
    with pytest.raises(ModelNotFoundError) as missing:
        hub.pick_file("Qwen/x-GGUF", QWEN_FILES, "Q3_K_M")
    assert missing.value.status_code == 404
    for label in ("q4_k_m", "q8_0", "fp16", "q4_0"):
        assert label in missing.value.message
    # A label that fits several files names them.
    with pytest.raises(InvalidValueError, match="q4_k_m.gguf, .*q4_0.gguf"):
        hub.pick_file("Qwen/x-GGUF", QWEN_FILES, "Q4")


def test_several_ggufs_and_no_label_is_a_400_naming_the_labels() -> None:
    with pytest.raises(InvalidValueError) as ambiguous:
        hub.pick_file("Qwen/x-GGUF", QWEN_FILES, None)
    assert ambiguous.value.status_code == 400
    assert "Qwen/x-GGUF:q8_0" in ambiguous.value.message


def test_an_ir_repository_or_a_lone_gguf_needs_no_label() -> None:
    assert hub.pick_file("OpenVINO/x-int4-ov", ["openvino_model.xml", "config.json"], None) is None
    assert hub.pick_file("a/b", ["README.md", "model-Q4_K_M.gguf"], None) == "model-Q4_K_M.gguf"
    # A split GGUF is refused with what to do, before any download.
    split = ["m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf"]
    with pytest.raises(UnsupportedModelError, match="--merge"):
        hub.pick_file("a/b", split, "Q8_0")


@pytest.mark.parametrize(
    "reference", ["hf.co/Qwen/x-GGUF:Q4_K_M", "huggingface.co/Qwen/x-GGUF:Q4_K_M",
                  "Qwen/x-GGUF:Q4_K_M"],
)  # fmt: skip
def test_ollamas_hub_names_are_understood(reference: str) -> None:
    assert hub.parse_reference(reference) == ("Qwen/x-GGUF", "Q4_K_M")


def test_pull_by_label_converts_the_gguf(tmp_path: Path, tiny_gguf: Path) -> None:
    root = tmp_path / "gguf-repo"
    root.mkdir()
    for name in ("tiny-Q8_0.gguf", "tiny-F16.gguf"):
        (root / name).write_bytes(tiny_gguf.read_bytes())
    store = ModelStore(tmp_path / "store")
    with HubStandIn({"acme/tiny-GGUF": root}) as stand_in:
        model = hub.pull(store, "acme/tiny-GGUF:F16", endpoint=stand_in.endpoint,
                         context_window=context)  # fmt: skip
        assert stand_in.downloads == ["tiny-F16.gguf"]
    assert model.id == "acme/tiny-GGUF" and (model.path / "openvino_model.xml").is_file()
    assert store.manifest(model.id).source == "hf:acme/tiny-GGUF/tiny-F16.gguf"
