"""Pulling models from the Hugging Face Hub (or any server with its layout, such as a mirror).

Downloads go through `huggingface_hub`, which shows progress bars and resumes partial files,
into a staging directory inside the store that is kept between attempts; only a complete
download becomes a stored model (a GGUF through `conversion.add_model`, as an import does).

A repository is named as people name it: `ORG/NAME` (an OpenVINO IR repository, a Whisper in
CTranslate2's format such as `Systran/faster-whisper-base`, or one that holds a single GGUF),
`ORG/NAME:Q4_K_M` (the GGUF of that quantization among many) or `ORG/NAME:file.gguf`.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import PurePosixPath

from ovrunner import conversion
from ovrunner.engines.base import ModelRef
from ovrunner.errors import (
    InvalidValueError,
    ModelNotFoundError,
    PullFailedError,
    UnsupportedModelError,
)
from ovrunner.store import ModelStore

log = logging.getLogger(__name__)

# What an OpenVINO GenAI pipeline reads from an IR repository: the model, its tokenizer and
# detokenizer IRs, configs and the chat template. Weights in other formats are skipped.
IR_FILES = ["openvino_*.xml", "openvino_*.bin", "*.json", "*.jinja"]
# What a Whisper in CTranslate2's format adds (`engines/whisper/ctranslate2_files.py`).
CTRANSLATE2_FILES = ["model.bin", "vocabulary.txt"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# Ollama names Hub models `hf.co/ORG/NAME:LABEL`.
_HUB_HOSTS = ("hf.co/", "huggingface.co/", "https://huggingface.co/")
# A GGUF split in parts (`-00001-of-00003.gguf`), as llama.cpp's gguf-split writes them.
_SPLIT = re.compile(r"-(\d{5})-of-\d{5}\.gguf$", re.IGNORECASE)


def parse_reference(reference: str) -> tuple[str, str | None]:
    """`ORG/NAME[:LABEL]` (optionally behind `hf.co/`) -> (repository id, label or file)."""
    for host in _HUB_HOSTS:
        reference = reference.removeprefix(host)
    repo_id, _, label = reference.partition(":")
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise InvalidValueError(f"{repo_id!r} is not a repository id like ORG/NAME", param="repo")
    return repo_id, label or None


def pick_file(repo_id: str, files: list[str], label: str | None) -> str | None:
    """The file to fetch from a repository holding `files`: None for an OpenVINO IR
    repository, else the one GGUF that `label` (a quantization such as Q4_K_M, or a file
    name) names. No match, or several, is an error listing what the repository holds."""
    picked = _pick(repo_id, files, label)
    if picked is not None and _SPLIT.search(picked):
        raise UnsupportedModelError(
            f"{picked} is one part of a split GGUF; ovrunner converts GGUFs of one file: join "
            "the parts with llama.cpp's `llama-gguf-split --merge` and import the file",
            param="repo",
        )
    return picked


def _pick(repo_id: str, files: list[str], label: str | None) -> str | None:
    ggufs = [f for f in files if f.lower().endswith(".gguf") and _part(f) <= 1]
    if label is not None and label.lower().endswith(".gguf"):
        if label not in files:
            raise ModelNotFoundError(f"{repo_id} has no file {label!r}; it holds: "
                                     f"{', '.join(ggufs) or 'no GGUF files'}", param="repo")  # fmt: skip
        return label
    if label is None:
        if "openvino_model.xml" in files or not ggufs:
            return None
        if len(ggufs) == 1:
            return ggufs[0]
        raise InvalidValueError(
            f"{repo_id} holds {len(ggufs)} GGUF files; name one by its quantization "
            f"({', '.join(f'{repo_id}:{q}' for q in labels(ggufs))})",
            param="repo",
        )
    matches = [f for f in ggufs if _has_label(f, label)]
    if len(matches) == 1:
        return matches[0]
    held = ", ".join(labels(ggufs)) or "no GGUF files"
    if not matches:
        raise ModelNotFoundError(f"{repo_id} has no GGUF file of quantization {label!r}; it "
                                 f"holds: {held}", param="repo")  # fmt: skip
    raise InvalidValueError(f"{label!r} names {len(matches)} files of {repo_id}: "
                            f"{', '.join(matches)}; name the file itself", param="repo")  # fmt: skip


def _part(filename: str) -> int:
    split = _SPLIT.search(filename)
    return int(split.group(1)) if split else 0


def _has_label(filename: str, label: str) -> bool:
    stem = PurePosixPath(filename).name[: -len(".gguf")]
    return re.search(rf"(^|[-._]){re.escape(label)}($|[-._])", stem, re.IGNORECASE) is not None


def labels(files: list[str]) -> list[str]:
    """The quantization labels in GGUF file names (`model-Q4_K_M.gguf` -> Q4_K_M)."""
    found = []
    for f in files:
        stem = PurePosixPath(f).name[: -len(".gguf")]
        match = re.search(r"(?i)(?:^|[-._])((?:I?Q\d\w*|F16|F32|BF16))$", stem)
        found.append(match.group(1) if match else PurePosixPath(f).name)
    return found


def pull(
    store: ModelStore,
    reference: str,
    *,
    model_id: str | None = None,
    filename: str | None = None,
    engine: str = "openvino",
    endpoint: str | None = None,
    revision: str | None = None,
    weight_format: str = "auto",
    context_window: Callable[[ModelRef], int],
    on_progress: conversion.OnProgress | None = None,
) -> ModelRef:
    """Download `reference` (see the module's docstring; `filename` names one file outright)
    and add it to the store as `model_id` (the repository id by default)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    repo_id, label = parse_reference(reference)
    model_id = model_id or repo_id
    store.ensure_free(model_id)
    staging = store.models_dir / f".pull-{repo_id.replace('/', '--')}"
    patterns = IR_FILES
    try:
        if filename is None:
            files = HfApi(endpoint=endpoint).list_repo_files(repo_id, revision=revision)
            filename = pick_file(repo_id, files, label)
            if filename is None and all(name in files for name in CTRANSLATE2_FILES):
                patterns = IR_FILES + CTRANSLATE2_FILES
        snapshot_download(
            repo_id,
            revision=revision,
            local_dir=staging,
            allow_patterns=[filename] if filename else patterns,
            endpoint=endpoint,
        )
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"no repository {repo_id!r} on the hub", param="repo") from exc
    except (HfHubHTTPError, OSError) as exc:
        # The partial files stay in the staging directory: the next pull resumes them.
        raise PullFailedError(f"downloading {repo_id!r} failed: {exc}") from exc
    source = staging / filename if filename else staging
    try:
        return conversion.add_model(
            store, source, model_id, engine=engine, weight_format=weight_format,
            source=f"hf:{repo_id}" + (f"/{filename}" if filename else ""),
            context_window=context_window, on_progress=on_progress,
        )  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
