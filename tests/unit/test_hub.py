"""Pulling from a loopback stand-in for the Hugging Face Hub (the real hub is unreachable here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovrunner import hub
from ovrunner.engines import model_files
from ovrunner.errors import ModelNotFoundError
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
    assert model.path.read_bytes() == tiny_gguf.read_bytes()


def test_an_unknown_repository_is_a_404(tmp_path: Path) -> None:
    with HubStandIn({}) as stand_in, pytest.raises(ModelNotFoundError):
        hub.pull(ModelStore(tmp_path), "acme/nothing", endpoint=stand_in.endpoint,
                 context_window=context)  # fmt: skip
