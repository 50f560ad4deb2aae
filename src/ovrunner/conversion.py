"""Adding a model file to the store: a GGUF is converted once to OpenVINO's compressed IR.

Every import and pull goes through `add_model`. An OpenVINO IR directory is copied as it is; a
GGUF is checked first (architecture, weight types, memory: a 4xx or 503 before any work), then
converted by `engines/openvino/gguf_to_ir.py` in a process of its own, whose JSON progress
lines are passed to the caller. The conversion writes into a staging directory inside the
store that only a finished conversion renames into place: a conversion killed at any point
leaves no model behind, and the next attempt removes what the killed one left and starts clean.
A Whisper model in CTranslate2's format (faster-whisper's) is converted the same way, by
`engines/whisper/convert.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovrunner.engines.base import Mode, ModelFormat, ModelRef
from ovrunner.engines.openvino.gguf_to_ir import GgufSummary, inspect_gguf
from ovrunner.engines.whisper.ctranslate2_files import is_ctranslate2_whisper
from ovrunner.errors import ConversionFailedError, ConversionMemoryError
from ovrunner.host_memory import available_memory
from ovrunner.store import ModelStore, detect_format

log = logging.getLogger(__name__)

_STAGING_PREFIX = ".convert-"
_LOCK = "converting.lock"


@dataclass(frozen=True)
class ConversionStatus:
    """One step of a conversion: `stage` is dequantize, build, compress, save or done."""

    stage: str
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    weights: str = ""  # the weight format, from the compress stage on

    def describe(self) -> str:
        if self.stage == "dequantize":
            return f"converting: reading weights {self.done}/{self.total}"
        if self.stage == "compress":
            return f"converting: compressing weights to {self.weights}"
        return f"converting: {self.stage}"


OnProgress = Callable[[ConversionStatus], None]


def add_model(
    store: ModelStore,
    path: Path,
    model_id: str,
    *,
    engine: str,
    source: str,
    weight_format: str,
    context_window: Callable[[ModelRef], int],
    on_progress: OnProgress | None = None,
) -> ModelRef:
    """Add `path` (a GGUF file or an IR directory) to the store as `model_id`."""
    store.require_writable()  # before any work on the file: a shared store is read-only
    add = functools.partial(store.add, model_id=model_id, engine=engine, source=source,
                            context_window=context_window)  # fmt: skip
    if path.is_dir() and is_ctranslate2_whisper(path):
        store.ensure_free(model_id)
        with _staging(store) as target:
            _run_converter(path, ["ovrunner.engines.whisper.convert", str(path), str(target)],
                           on_progress)  # fmt: skip
            return add(target, move=True, mode=Mode.TRANSCRIPTION,
                       converted={"source_format": "ctranslate2", "weight_format": "f16"})  # fmt: skip
    if detect_format(path) is not ModelFormat.GGUF:
        return add(path)
    store.ensure_free(model_id)
    summary = inspect_gguf(path)
    check_memory(summary, path)
    with _staging(store) as target:
        _run_converter(path, ["ovrunner.engines.openvino.gguf_to_ir", str(path), str(target),
                              "--weight-format", weight_format, "--engine", engine], on_progress)  # fmt: skip
        return add(target, move=True,
                   converted={"source_format": "gguf", "quantization": summary.file_type,
                              "weight_format": weight_format})  # fmt: skip


@contextlib.contextmanager
def _staging(store: ModelStore) -> Iterator[Path]:
    """Where a conversion writes the model: a locked staging directory in the store (what
    killed conversions left is removed first), removed however the conversion ends."""
    remove_abandoned(store)
    staging = store.staging_dir(_STAGING_PREFIX)
    lock = (staging / _LOCK).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield staging / "model"
    finally:
        lock.close()
        shutil.rmtree(staging, ignore_errors=True)


def check_memory(summary: GgufSummary, path: Path) -> None:
    """Refuse a conversion the machine has not the memory for, before it starts."""
    available = available_memory()
    if available is not None and summary.required_memory > available:
        raise ConversionMemoryError(
            f"converting {path.name} ({summary.parameters / 1e9:.1f}B parameters) needs about "
            f"{summary.required_memory / 2**30:.1f} GiB of memory and "
            f"{available / 2**30:.1f} GiB is available; free memory (unload models with "
            "`POST /engines/unload`) or convert it on a larger machine and import the IR"
        )


def remove_abandoned(store: ModelStore) -> None:
    """Remove what killed conversions left: staging directories whose lock nobody holds."""
    if not store.models_dir.is_dir():
        return
    for staging in store.models_dir.glob(f"{_STAGING_PREFIX}*"):
        try:
            with (staging / _LOCK).open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a conversion in progress
        except OSError:
            pass  # no lock file: killed before it took one
        log.info("removing an interrupted conversion: %s", staging.name)
        shutil.rmtree(staging, ignore_errors=True)


def _run_converter(source: Path, module_args: list[str], on_progress: OnProgress | None) -> None:
    """Run `python -m module_args...`, passing its JSON progress lines to `on_progress`."""
    command = [sys.executable, "-m", *module_args]
    errors: deque[str] = deque(maxlen=20)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    ) as process:  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        stderr = process.stderr
        # stderr (NNCF's tables and bars) is drained by a thread, so neither pipe fills.
        drain = _Drain(stderr, errors)
        try:
            for line in process.stdout:
                status = _parse(line)
                if status is not None and on_progress is not None:
                    on_progress(status)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            drain.join()
    if process.returncode != 0:
        detail = next((e for e in reversed(errors) if "Error" in e or "error" in e), "")
        raise ConversionFailedError(
            f"converting {source.name} failed (exit code {process.returncode})"
            + (f": {detail}" if detail else "")
        )


def _parse(line: str) -> ConversionStatus | None:
    try:
        fields: dict[str, Any] = json.loads(line)
        return ConversionStatus(**fields)
    except (ValueError, TypeError):
        return None


class _Drain:
    def __init__(self, stream: Any, keep: deque[str]) -> None:
        self._thread = threading.Thread(target=self._run, args=(stream, keep), daemon=True)
        self._thread.start()

    @staticmethod
    def _run(stream: Any, keep: deque[str]) -> None:
        for line in stream:
            if line.strip():
                keep.append(line.strip())

    def join(self) -> None:
        self._thread.join(timeout=5)


async def with_progress(work: Callable[[OnProgress], ModelRef]) -> AsyncIterator[Any]:
    """Run `work(on_progress)` in a thread; yield each `ConversionStatus` as it comes, then
    the `ModelRef` it returned (its error is raised here)."""
    loop = asyncio.get_running_loop()
    updates: asyncio.Queue[ConversionStatus] = asyncio.Queue()

    def on_progress(status: ConversionStatus) -> None:
        loop.call_soon_threadsafe(updates.put_nowait, status)

    task = asyncio.ensure_future(asyncio.to_thread(work, on_progress))
    while not task.done():
        getter = asyncio.ensure_future(updates.get())
        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            yield getter.result()
        else:
            getter.cancel()
    while not updates.empty():
        yield updates.get_nowait()
    yield task.result()
