"""A directory seen read-only, as a model volume mounted into many pods is."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def read_only_view(source: Path, view: Path) -> Iterator[Path]:
    """`source` at `view`, read-only for every process, root included: a read-only bind mount
    (which needs root's CAP_SYS_ADMIN, as the CI machines have). Unmounted on exit."""
    view.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(source), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        probe = view / ".write-probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            raise AssertionError(f"{view} was mounted read-only and still took a write")
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)
