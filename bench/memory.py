"""Resident memory of a server and its engine processes, read from Linux `/proc`.

Read once, not sampled: reading a process's `status` takes its memory-map lock, and sampling
it every 50 ms during a run cost the single-stream measurement 5-10%.
"""

from __future__ import annotations

from pathlib import Path


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue += [int(child) for child in children.read_text().split()]
            except OSError:
                pass  # the task ended while we read
    return found


def resident_mib(pid: int, field: str = "VmRSS") -> float:
    """`field` of `pid` and every process below it (ovrunner steps each model in a child),
    summed: VmRSS now, or VmHWM, each process's peak since it started."""
    total_kib = 0
    for process in _descendants(pid):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:
            continue
        total_kib += next((int(line.split()[1]) for line in status.splitlines()
                           if line.startswith(f"{field}:")), 0)  # fmt: skip
    return round(total_kib / 1024, 1)
