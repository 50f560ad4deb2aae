"""What both OpenVINO engines share: the installation, devices and status, how a model is
described and opened (preferring a saved IR), and the schema check before admission.
OpenVINO exceptions become `ovrunner.errors` here and in the engines, nowhere else.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovrunner.engines import model_files
from ovrunner.engines.base import (
    Engine,
    EngineState,
    EngineStatus,
    GenerationRequest,
    ModelFormat,
    ModelInfo,
    ModelRef,
)
from ovrunner.engines.openvino import tokenizer_ir
from ovrunner.engines.openvino.generation import import_genai
from ovrunner.engines.openvino.grammar import shared_schema_check
from ovrunner.errors import CrashLoopError, EngineUnavailableError

log = logging.getLogger(__name__)


# Builds a pipeline from a model file or IR directory, an optional tokenizer and properties.
Construct = Callable[[str, Any, dict[str, Any]], Any]


@functools.cache
def available_devices() -> tuple[str, ...]:
    """OpenVINO's devices, asked once: creating a Core costs 2-40 ms, and /healthz, engine
    status and every worker job ask. A device plugged in later needs a restart."""
    import openvino

    return tuple(openvino.Core().available_devices)


def require_device(device: str) -> None:
    """Fail with a clear error when `device` (CPU, GPU, GPU.1, NPU) is not on this machine."""
    family = device.split(".")[0].upper()
    devices = available_devices()
    if not any(d == device or d.split(".")[0] == family for d in devices):
        raise EngineUnavailableError(
            f"device {device} is not available on this machine (available: {', '.join(devices)})"
        )


def openvino_status(device: str | None = None, detail: str = "") -> EngineState:
    """Running with the OpenVINO GenAI version and devices; not installed when it does not
    import; error when `device` (if given) is absent."""
    try:
        genai = import_genai()
    except EngineUnavailableError as exc:
        return EngineState(EngineStatus.NOT_INSTALLED, exc.message)
    try:
        devices = available_devices()
    except RuntimeError as exc:  # installed, but OpenVINO cannot list its devices
        return EngineState(EngineStatus.ERROR, f"OpenVINO cannot list its devices: {exc}")
    if device is not None:
        try:
            require_device(device)
        except EngineUnavailableError as exc:
            return EngineState(EngineStatus.ERROR, exc.message)
    version = genai.__version__.split("-")[0]
    return EngineState(EngineStatus.RUNNING,
                       f"openvino-genai {version}; devices: {', '.join(devices)}{detail}")  # fmt: skip


# What an OpenVINO engine installs: openvino-genai brings the other two.
OPENVINO_DISTRIBUTIONS = ("openvino", "openvino-genai", "openvino-tokenizers")


class OpenVINOFamily(Engine):
    """What both OpenVINO engines share: the installation, how a model is described, and
    the schema check (both compile schemas with the same xgrammar)."""

    distributions = OPENVINO_DISTRIBUTIONS

    def install(self) -> None:
        import_genai()

    def describe(self, model: ModelRef) -> ModelInfo:
        return model_files.describe(model)

    async def validate(self, request: GenerationRequest) -> None:
        await super().validate(request)
        check = shared_schema_check()
        constraint = request.sampling.constraint
        if constraint is not None:
            await check.check(constraint.text, kind=constraint.kind.value, param=constraint.param)
        if request.tools is not None and request.tools.calling:
            for i, tool in enumerate(request.tools.tools):
                await check.check(tool.parameters, param=f"tools[{i}].function.parameters")


@dataclass
class CrashWindow:
    """Recent deaths of a runner's process: `limit` of them within `window_s` is a crash loop,
    after which it is not restarted (the generating engine's and the encoders' policy)."""

    limit: int
    window_s: float
    times: list[float] = field(default_factory=list)

    def record(self, what: str, cause: str) -> CrashLoopError | None:
        """Count one death of `what` ("the engine of 'm'"); the error once it is a loop."""
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < self.window_s] + [now]
        if len(self.times) < self.limit:
            return None
        return CrashLoopError(
            f"{what} failed {len(self.times)} times within {self.window_s:.0f} s (last: "
            f"{cause}); it is not restarted until the model is unloaded, or for "
            f"{self.window_s:.0f} s",
            retry_at=now + self.window_s,
        )


def cache_properties(cache_dir: Path | None, device: str) -> dict[str, Any]:
    """The property that keeps OpenVINO's compiled-model cache in `cache_dir`, if one is set,
    for devices whose compilation is slow (GPU, NPU). Not on the CPU: there the cache made
    loads slower (the 0.5B Qwen opened in 1.41 s from its cached blob and 1.02 s without; the
    1.5B 3.88 s and 3.01 s) and the blob's pages stayed resident beside the weights (+130 MB at
    the 0.5B's peak); two processes writing one cache also raced on its files."""
    if cache_dir is None or device.split(".")[0].upper() == "CPU":
        return {}
    cache_dir.mkdir(parents=True, exist_ok=True)
    return {"CACHE_DIR": str(cache_dir)}


def open_model(
    genai: Any, model: ModelRef, properties: dict[str, Any], construct: Construct
) -> Any:
    """Open `model` with `construct(source, tokenizer, properties)`, preferring a saved IR.

    A GGUF is converted at every load unless an IR was saved beside it; the first load saves
    one (in the model store). With the tokenizer IR that `open_tokenizer` saved there too, the
    pipeline reads both from the directory and nothing is built from the GGUF (a warm start).
    """
    if model.format is ModelFormat.OPENVINO_IR:
        return construct(str(model.path), None, properties)
    ir_dir = model_files.converted_ir_dir(model)
    if ir_dir is not None:
        try:
            if model_files.has_tokenizer_ir(ir_dir):
                return construct(str(ir_dir), None, properties)
            return construct(str(ir_dir), genai.Tokenizer(str(model.path)), properties)
        except Exception:  # noqa: BLE001 - any failure of a cached IR: convert again
            log.warning("the saved IR of %s did not load; converting the GGUF again", model.id)
    return construct(str(model.path), None, {**properties, "enable_save_ov_model": True})


def ir_dir_of(model: ModelRef) -> Path | None:
    """The IR directory `open_model` reads `model` from, once there is one."""
    if model.format is ModelFormat.OPENVINO_IR:
        return model.path
    return model_files.converted_ir_dir(model)


def draft_ir_dir(genai: Any, draft: ModelRef) -> Path:
    """The IR directory of a draft model (`draft_model()` reads no GGUF): a GGUF draft's
    saved IR, written on first use by a pipeline that converts it."""
    if draft.format is ModelFormat.OPENVINO_IR:
        return draft.path
    ir_dir = model_files.converted_ir_dir(draft)
    if ir_dir is None or not model_files.has_tokenizer_ir(ir_dir):
        log.info("converting the draft model %s to IR", draft.id)
        genai.LLMPipeline(str(draft.path), "CPU", enable_save_ov_model=True)
        ir_dir = draft.path.parent
    return ir_dir


def open_tokenizer(genai: Any, model: ModelRef, window: int, **properties: Any) -> Any:
    """The model's tokenizer, from its tokenizer IR, taking the whole `window` (checked).

    OpenVINO GenAI builds a GGUF's tokenizer from its vocabulary at every load (2.8 s for
    SmolLM2, against 0.1 s for the IR), with a cap that cuts prompts (`tokenizer_ir`), so
    the first build saves the IR beside the model, lifts the cap, and loads the saved IR. It
    is written in a staging directory and moved into place file by file, the XML files last:
    an interrupted save leaves no tokenizer a later load would take as complete. A saved or
    imported IR with such a cap is mended in place where the store is writable.
    """
    directory = tokenizer_dir(model)
    tokenizer = None
    if model.format is ModelFormat.OPENVINO_IR:
        mend_tokenizer(directory)
        tokenizer = genai.Tokenizer(str(directory), **properties)
    elif model_files.has_tokenizer_ir(directory):
        try:
            mend_tokenizer(directory)
            tokenizer = genai.Tokenizer(str(directory), **properties)
        except Exception:  # noqa: BLE001 - a damaged IR: build it from the GGUF again
            log.warning("the saved tokenizer of %s did not load; building it again", model.id)
    if tokenizer is None:
        tokenizer = _build_from_gguf(genai, model, directory, properties)
    tokenizer_ir.check_whole(tokenizer, window, model.id)
    return tokenizer


def tokenizer_dir(model: ModelRef) -> Path:
    """Where the model's tokenizer IR is, or is saved on first load."""
    return model.path if model.format is ModelFormat.OPENVINO_IR else model.path.parent


def mend_tokenizer(directory: Path) -> None:
    """Lift the cap of the tokenizer IR saved in `directory`, if one is there and has one.
    A load calls it before its engine process starts, so no process reads the IR while it
    is rewritten."""
    if not (directory / model_files.TOKENIZER_XML).is_file():
        return
    try:
        tokenizer_ir.untruncate(directory)
    except OSError as exc:  # a read-only store: `check_whole` refuses it if the cap matters
        log.warning("cannot mend the tokenizer in %s: %s", directory, exc)
    except RuntimeError:  # a damaged IR: loading it fails, and a GGUF's is built again
        log.warning("cannot read the tokenizer in %s to mend it", directory)


def _build_from_gguf(genai: Any, model: ModelRef, directory: Path,
                     properties: dict[str, Any]) -> Any:  # fmt: skip
    """Build the GGUF's tokenizer IR in a staging directory, in a process of its own
    (`tokenizer_ir.build_from_gguf`), load it from there (the engine process may write its
    own, capped, copy beside the model meanwhile), and keep it in the store where the store
    is writable."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=directory))
        keep = True
    except OSError:  # a read-only store: build it in a scratch directory, keep nothing
        staging, keep = Path(tempfile.mkdtemp(prefix="ovrunner-tokenizer-")), False
    try:
        built = subprocess.run(
            [sys.executable, "-m", "ovrunner.engines.openvino.tokenizer_ir", str(model.path),
             str(staging)], capture_output=True, text=True, check=False,
        )  # fmt: skip
        if built.returncode != 0:
            raise RuntimeError(f"the tokenizer could not be built: {built.stderr[-2000:]}")
        tokenizer = genai.Tokenizer(str(staging), **properties)
        if keep:
            for name in sorted(model_files.TOKENIZER_FILES, key=lambda n: n.endswith(".xml")):
                os.replace(staging / name, directory / name)
        return tokenizer
    finally:
        shutil.rmtree(staging, ignore_errors=True)
