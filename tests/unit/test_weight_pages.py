"""Shedding a mapped file's pages: the process stops holding them, and reads stay right."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from ovrunner.engines.openvino.weight_pages import shed, shedding


def mapped_rss_kib(path: Path) -> int:
    """Resident kB of this process's mappings of `path`, from /proc/self/smaps."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields[0].split("-")) == 2 and ":" not in fields[0]:
                inside = len(fields) == 6 and fields[5] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def test_shed_pages_leave_the_resident_set_and_read_back_the_same(tmp_path: Path) -> None:
    path = (tmp_path / "weights.bin").resolve()
    data = os.urandom(8 << 20)
    path.write_bytes(data)
    with path.open("rb") as file:
        view = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)  # private and read-only
        try:
            assert view[:] == data  # every page read: resident
            assert mapped_rss_kib(path) >= 8 * 1024 - 64
            shed({str(path)})
            assert mapped_rss_kib(path) < 256
            assert view[:] == data  # read again from the page cache, unchanged
            with shedding([path]):
                pass
            assert mapped_rss_kib(path) < 256
        finally:
            view.close()


def test_shedding_nothing_is_harmless(tmp_path: Path) -> None:
    with shedding([tmp_path / "absent.bin"]):
        pass
