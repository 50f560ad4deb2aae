"""The model store: one directory per model with a small manifest.

Model ids are validated names and never become paths as given: the store maps them to its
own directory names. The embedded models (`embedded.py`) are registered on first use from
the packages that ship them, so nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ovrunner.embedded import EMBEDDED, EmbeddedModel
from ovrunner.engines.base import Mode, ModelFormat, ModelRef
from ovrunner.engines.encoder_files import detect_mode
from ovrunner.engines.model_files import IR_XML
from ovrunner.engines.whisper.files import is_whisper_ir
from ovrunner.errors import (
    InvalidRequestError,
    InvalidValueError,
    ModelLoadFailedError,
    ModelNotFoundError,
    OvrunnerError,
    StoreReadOnlyError,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def writable(directory: Path) -> bool:
    """Whether this process may write in `directory`, or create it (its nearest existing
    parent decides): false on a read-only mount, whoever the process is."""
    while not directory.exists() and directory.parent != directory:
        directory = directory.parent
    return os.access(directory, os.W_OK)


_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


@dataclass(frozen=True)
class Manifest:
    id: str
    engine: str
    format: str
    source: str
    file: str  # the model file or directory, relative to the model's store directory
    created: int
    size_bytes: int = 0
    context_window: int | None = None
    # hermes, llama3_json or mistral: overrides the family read from the chat template.
    tool_format: str | None = None
    mode: str = Mode.COMPLETION.value
    # Assisted decoding (docs/settings.md): candidates from the prompt's n-grams, or from
    # another stored model used as a draft.
    prompt_lookup: bool = False
    draft_model: str | None = None
    # A model converted at import or pull (docs/models.md): what it was and what it became.
    source_format: str | None = None
    quantization: str | None = None  # the source's own label, such as MOSTLY_Q4_K_M
    weight_format: str | None = None

    def ref(self, directory: Path) -> ModelRef:
        # A derived model's file lies in its base's directory (`../base/model.gguf`).
        path = Path(os.path.normpath(directory / self.file))
        return ModelRef(self.id, path, ModelFormat(self.format), self.engine,
                        self.tool_format, Mode(self.mode), self.prompt_lookup)  # fmt: skip


def validate_model_id(model_id: str) -> str:
    if not _MODEL_ID.match(model_id) or ".." in model_id:
        raise InvalidValueError(f"{model_id!r} is not a valid model id", param="model")
    return model_id


class ModelStore:
    def __init__(self, root: Path, state_dir: Path | None = None) -> None:
        self.root = root
        self.models_dir = root / "models"
        # Where the embedded models are registered when the store is read-only: they are
        # links to their packages, made (and their IR built) on first use.
        self._embedded_root = (state_dir or Path(tempfile.gettempdir()) /
                               f"ovrunner-embedded-{os.getuid()}") / "models"  # fmt: skip
        self._building = threading.Lock()

    def _dir(self, model_id: str) -> Path:
        name = validate_model_id(model_id).replace("/", "--")
        if model_id in EMBEDDED and not writable(self.root):
            prepared = self.models_dir / name
            if (prepared / MANIFEST).is_file() and (prepared / EMBEDDED[model_id].file).exists() \
                    and next(prepared.rglob(IR_XML), None) is not None:  # fmt: skip
                return prepared  # registered and built while the store was writable
            return self._embedded_root / name
        return self.models_dir / name

    def get(self, model_id: str, *, with_draft: bool = True) -> ModelRef:
        """The stored model `model_id`; the embedded default is registered on first use.
        `with_draft=False` leaves its draft model unresolved (a draft's own draft is not
        used, and two models drafting for each other must not recurse)."""
        directory = self._dir(model_id)
        if model_id in EMBEDDED:
            # Checked each time: the package's location changes with the virtual environment.
            return self._register_embedded(model_id, EMBEDDED[model_id])
        manifest_path = directory / MANIFEST
        if manifest_path.is_file():
            try:
                manifest = _read_manifest(manifest_path)
            except (OSError, ValueError, TypeError) as exc:
                raise ModelLoadFailedError(
                    f"the stored model {model_id!r} is damaged (its manifest: {exc}); "
                    "remove it and import or pull it again"
                ) from exc
            ref = manifest.ref(directory)
            return self._with_draft(manifest, ref) if with_draft else ref
        raise ModelNotFoundError(f"The model {model_id!r} does not exist", param="model")

    def _with_draft(self, manifest: Manifest, ref: ModelRef) -> ModelRef:
        if manifest.draft_model is None:
            return ref
        try:
            draft = self.get(manifest.draft_model, with_draft=False)
        except ModelNotFoundError as exc:
            raise ModelLoadFailedError(
                f"the draft model {manifest.draft_model!r} of {manifest.id!r} is not in the store"
            ) from exc
        # A draft is used plainly: its own assistance is not stacked.
        return replace(ref, draft=replace(draft, prompt_lookup=False))

    def list_ids(self) -> list[str]:
        stored = set()
        for path in self.models_dir.glob(f"*/{MANIFEST}") if self.models_dir.is_dir() else []:
            try:
                stored.add(_read_manifest(path).id)
            except (OSError, ValueError, TypeError) as exc:
                # A damaged entry is reported and skipped; it must not take the store down.
                log.warning("skipping the damaged model entry %s: %s", path.parent.name, exc)
        available = {i for i, m in EMBEDDED.items() if m.installed()}
        return sorted(stored | available)

    def manifest(self, model_id: str) -> Manifest:
        self.get(model_id)  # registers the embedded model; 404 for unknown ids
        return _read_manifest(self._dir(model_id) / MANIFEST)

    def summary(self, model_id: str, context_window: Callable[[ModelRef], int]) -> dict[str, Any]:
        """The manifest with the size on disk (links followed) and the context window, read
        from the model's files when the manifest does not hold it."""
        ref = self.get(model_id)
        manifest = _read_manifest(self._dir(model_id) / MANIFEST)
        window = manifest.context_window
        if window is None:
            try:
                window = context_window(ref)
            except OvrunnerError:
                window = None
        size = sum(disk_size(p) for p in self._dir(model_id).iterdir() if p.name != MANIFEST)
        return {**asdict(manifest), "size_bytes": size, "context_window": window}

    def require_writable(self) -> None:
        """A 403 naming the store when models cannot be added or removed: replicas share a
        store mounted read-only, and it is changed where it is written from."""
        if not writable(self.root):
            raise StoreReadOnlyError(
                f"the model store {self.root} is read-only here: add and remove models where "
                "it is mounted writable"
            )

    def remove(self, model_id: str) -> None:
        """Delete a stored model and its files (for the embedded model: its link and IR).
        Works on a damaged entry too, so it can be cleaned up."""
        directory = self._dir(model_id)
        if not directory.is_dir():
            raise ModelNotFoundError(f"The model {model_id!r} does not exist", param="model")
        self.require_writable()
        dependants = self._dependants(model_id)
        if dependants:
            raise InvalidRequestError(
                f"the model {model_id!r} is the base or draft of {', '.join(dependants)}; "
                "remove those first",
                param="model",
            )
        shutil.rmtree(directory)

    def _dependants(self, model_id: str) -> list[str]:
        """Models made with `derive` on the files of `model_id`, or using it as a draft."""
        found = []
        for path in self.models_dir.glob(f"*/{MANIFEST}"):
            try:
                manifest = _read_manifest(path)
            except (OSError, ValueError, TypeError):
                continue
            if manifest.id != model_id and (
                manifest.source == f"derived:{model_id}" or manifest.draft_model == model_id
            ):
                found.append(manifest.id)
        return sorted(found)

    def add(
        self,
        path: Path,
        model_id: str,
        *,
        engine: str,
        source: str,
        context_window: Callable[[ModelRef], int],
        mode: Mode | None = None,
        move: bool = False,
        converted: dict[str, Any] | None = None,
    ) -> ModelRef:
        """Copy a GGUF file or an OpenVINO IR directory into the store as `model_id`.

        The copy is staged in the store and renamed into place, so a failed import leaves
        nothing behind; `context_window` reads the model's own files and refuses what it
        cannot read. `mode` is read from the files (`encoder_files.detect_mode`) unless given.
        `move` moves a directory that is already in the store (a conversion's output) instead
        of copying it; `converted` holds the manifest's conversion fields.
        """
        target = self.ensure_free(model_id)
        model_format = detect_format(path)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=self.models_dir))
        try:
            if model_format is ModelFormat.GGUF:
                file = "model.gguf"
                shutil.copyfile(path, staging / file)
            elif move:
                file = "model"
                path.rename(staging / file)
            else:
                file = "model"
                # Not the hub client's download bookkeeping, if it was pulled.
                shutil.copytree(path, staging / file, ignore=shutil.ignore_patterns(".cache"))
            mode = mode or detect_mode(staging / file)
            ref = ModelRef(model_id, staging / file, model_format, engine, mode=mode)
            manifest = Manifest(
                id=model_id,
                engine=engine,
                format=model_format.value,
                source=source,
                file=file,
                created=int(time.time()),
                size_bytes=disk_size(staging / file),
                context_window=context_window(ref),
                mode=mode.value,
                **(converted or {}),
            )
            (staging / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return manifest.ref(target)

    def ensure_free(self, model_id: str) -> Path:
        """The directory `model_id` would have; a 400 if a model has that id already, a 403
        if the store cannot take one."""
        self.require_writable()
        target = self._dir(model_id)
        if target.exists() or model_id in EMBEDDED:
            raise InvalidRequestError(f"the model {model_id!r} already exists", param="name")
        return target

    def staging_dir(self, prefix: str) -> Path:
        """A new directory inside the store for work that becomes a model (same file system,
        so it is renamed into place, never copied)."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.models_dir))

    def derive(
        self, base_id: str, model_id: str, *, prompt_lookup: bool, draft_model: str | None
    ) -> ModelRef:
        """A new model on the files of `base_id` with its own decoding settings, as
        `ollama create` makes one from a base and parameters; the files are not copied."""
        base = self.manifest(base_id)
        target = self.ensure_free(model_id)
        if base.mode != Mode.COMPLETION.value:
            raise InvalidValueError(f"{base_id!r} is an {base.mode} model: nothing to decode")
        if prompt_lookup and draft_model is not None:
            raise InvalidValueError("prompt lookup and a draft model exclude each other")
        if draft_model is not None:
            self.get(draft_model, with_draft=False)  # 404 now, not at the first load
        base_file = self._dir(base_id) / base.file
        manifest = replace(
            base, id=model_id, source=f"derived:{base_id}", created=int(time.time()),
            file=os.path.relpath(base_file, target), size_bytes=0,
            prompt_lookup=prompt_lookup, draft_model=draft_model,
        )  # fmt: skip
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".derive-", dir=self.models_dir))
        try:
            (staging / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(model_id)

    def created(self, model_id: str) -> int:
        manifest_path = self._dir(model_id) / MANIFEST
        if manifest_path.is_file():
            return int(json.loads(manifest_path.read_text())["created"])
        return 0

    def _register_embedded(self, model_id: str, embedded: EmbeddedModel) -> ModelRef:
        packages = embedded.package_dirs(model_id)
        directory = self._dir(model_id)
        directory.mkdir(parents=True, exist_ok=True)
        if not embedded.lazy:
            embedded.build(packages, directory / embedded.file)
        manifest_path = directory / MANIFEST
        if manifest_path.is_file():
            return _read_manifest(manifest_path).ref(directory)
        window = embedded.context_window(packages) if embedded.context_window else None
        manifest = Manifest(
            id=model_id,
            engine=embedded.engine,
            format=embedded.format.value,
            source=embedded.source,
            file=embedded.file,
            created=int(time.time()),
            context_window=window,
            mode=embedded.mode.value,
        )
        manifest_path.write_text(json.dumps(asdict(manifest), indent=2))
        return manifest.ref(directory)

    def materialize(self, model: ModelRef) -> None:
        """Build the files of an embedded model that are made on first load (an IR
        conversion); blocking, so the lifecycle calls it from its loading thread."""
        embedded = EMBEDDED.get(model.id)
        if embedded is None or not embedded.lazy:
            return
        with self._building:  # one conversion, however many requests wait for it
            if not model.path.exists():
                embedded.build(embedded.package_dirs(model.id), model.path)


def _read_manifest(path: Path) -> Manifest:
    return Manifest(**json.loads(path.read_text()))


def detect_format(path: Path) -> ModelFormat:
    """GGUF for a `.gguf` file, OpenVINO IR for a directory holding `openvino_model.xml` (or
    Whisper's encoder and decoder)."""
    if path.is_file() and path.suffix == ".gguf":
        return ModelFormat.GGUF
    if path.is_dir() and ((path / "openvino_model.xml").is_file() or is_whisper_ir(path)):
        return ModelFormat.OPENVINO_IR
    raise InvalidValueError(
        f"{path} is neither a .gguf file, an OpenVINO IR directory (openvino_model.xml) nor a "
        "Whisper model (OpenVINO IR, or CTranslate2's model.bin)",
        param="path",
    )


def disk_size(path: Path) -> int:
    """Bytes on disk of a file or a directory tree (links followed)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0
