"""Programs from Debian's packages that tests run for real (chromium, PostgreSQL, nginx).

`.ci/run` installs them when absent. Without one, its tests fail under CI (so a missing
install is never a silent pass) and are skipped on a developer's machine.
"""

from __future__ import annotations

import glob
import os
import shutil

import pytest


def require_program(name: str, package: str, *, also_in: str | None = None) -> str:
    """The path of program `name`, looked up on PATH and then in the glob `also_in`."""
    found = shutil.which(name)
    if found is None and also_in is not None:
        candidates = sorted(glob.glob(also_in), key=_version_key)
        found = candidates[-1] if candidates else None
    if found is None:
        message = (f"this test needs `{name}` from Debian's `{package}`: "
                   f"`apt-get install {package}` (.ci/run installs it when absent)")  # fmt: skip
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _version_key(path: str) -> list[int]:
    return [int(part) for part in path.split("/") if part.isdigit()]
