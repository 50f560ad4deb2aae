from __future__ import annotations

from pathlib import Path

import pytest

from ovrunner.engines.base import ModelFormat
from ovrunner.errors import InvalidValueError, OvrunnerError
from ovrunner.store import ModelStore


def test_embedded_model_is_linked_into_the_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert "smollm2-135m" in store.list_ids()
    ref = store.get("smollm2-135m")
    assert ref.format is ModelFormat.GGUF and ref.engine == "openvino"
    assert ref.path.parent == tmp_path / "models" / "smollm2-135m"
    assert ref.path.is_symlink() and ref.path.resolve().name.endswith(".gguf")
    assert store.created("smollm2-135m") > 0


def test_a_dangling_link_is_repaired(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    link = store.get("smollm2-135m").path
    link.unlink()
    link.symlink_to(tmp_path / "gone-venv" / "model.gguf")  # the old virtualenv was removed
    assert store.get("smollm2-135m").path.exists()


def _context(model) -> int:  # type: ignore[no-untyped-def]
    from ovrunner.engines import model_files

    return model_files.describe(model).context_window


def make_ir_dir(path: Path) -> Path:
    path.mkdir()
    (path / "openvino_model.xml").write_text("<net/>")
    (path / "openvino_model.bin").write_bytes(b"\0" * 4096)
    (path / "config.json").write_text('{"max_position_embeddings": 2048, "model_type": "qwen2"}')
    return path


def test_import_gguf_and_ir_list_and_remove(tmp_path: Path, tiny_gguf: Path) -> None:
    store = ModelStore(tmp_path / "store")
    gguf = store.add(tiny_gguf, "tiny", engine="openvino", source="test", context_window=_context)
    ir = store.add(make_ir_dir(tmp_path / "ir"), "org/qwen-ov", engine="openvino", source="test",
                   context_window=_context)  # fmt: skip
    assert (gguf.format, ir.format) == (ModelFormat.GGUF, ModelFormat.OPENVINO_IR)
    assert {"tiny", "org/qwen-ov"} <= set(store.list_ids())
    summary = store.summary("org/qwen-ov", _context)
    assert summary["context_window"] == 2048 and summary["size_bytes"] >= 4096
    assert summary["format"] == "openvino-ir"
    directory = ir.path.parent
    store.remove("org/qwen-ov")
    assert not directory.exists() and "org/qwen-ov" not in store.list_ids()


def test_a_failed_import_leaves_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf")
    with pytest.raises(OvrunnerError):
        store.add(broken, "broken", engine="openvino", source="test", context_window=_context)
    assert "broken" not in store.list_ids()
    assert [p.name for p in store.models_dir.iterdir()] == []


@pytest.mark.parametrize("name", ["../escape", "/abs", "a/b/c", "a..b", ""])
def test_ids_that_could_be_paths_are_refused(tmp_path: Path, tiny_gguf: Path, name: str) -> None:
    with pytest.raises(InvalidValueError):
        ModelStore(tmp_path).add(tiny_gguf, name, engine="openvino", source="t",
                                 context_window=_context)  # fmt: skip


def test_a_damaged_entry_is_reported_not_fatal(tmp_path: Path, tiny_gguf: Path) -> None:
    from starlette.testclient import TestClient

    from ovrunner.app import create_app
    from ovrunner.settings import Settings

    store = ModelStore(tmp_path)
    store.add(tiny_gguf, "good", engine="openvino", source="t", context_window=_context)
    damaged = store.add(
        tiny_gguf, "damaged", engine="openvino", source="t", context_window=_context
    )
    (damaged.path.parent / "manifest.json").write_text("{not json")
    # Start-up preloads the damaged model: the server still comes up and serves the rest.
    with TestClient(
        create_app(Settings(store_dir=tmp_path, model="damaged", preload=True)),
        base_url="http://localhost",
    ) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert "good" in ids and "damaged" not in ids
        answer = client.post("/v1/completions", json={"model": "damaged", "prompt": "a"})
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_load_failed"
        assert "damaged" in answer.json()["error"]["message"]
        assert client.delete("/models/damaged").status_code == 200
        assert client.get("/healthz").json()["ok"] is True
