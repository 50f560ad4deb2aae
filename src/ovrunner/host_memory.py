"""What Linux tells of memory: what is available to load into, and what a process holds."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is none)."""
    return _field("/proc/meminfo", "MemAvailable:")


def resident_bytes(pid: int) -> int | None:
    """The resident set of process `pid`, in bytes; None once it is gone. From `statm`, which
    the kernel answers from counters, without the memory-map lock `status` takes: cheap
    enough for every scrape."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _field(path: str, name: str) -> int | None:
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError):
        return None
    return None
