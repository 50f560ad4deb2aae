"""Running the `ovrunner` command as a user does: a fresh interpreter, output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str, timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`ovrunner ARGS...`; with `check`, a non-zero exit raises."""
    return subprocess.run([sys.executable, "-m", "ovrunner.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=check)  # fmt: skip


def store_with_tiny(store: Path, tiny_gguf: Path) -> Path:
    """`store` with the tiny test model imported as `tiny`, as a user imports a GGUF."""
    run_cli("models", "import", str(tiny_gguf), "--name", "tiny", "--store-dir", str(store),
            check=True)  # fmt: skip
    return store
