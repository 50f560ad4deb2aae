from __future__ import annotations

from pathlib import Path

from ovrunner.engines.base import ModelFormat
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
