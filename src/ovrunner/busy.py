"""Busy counters: monotonic microsecond readings of work a device has done.

A worker generation only counts as done on a device when that device's counter moved while
it ran. On an NPU the kernel driver exposes the time the NPU was busy in sysfs; on CPU the
CPU time of the server and of its engine processes (user plus system, every thread, OpenVINO's
workers included) plays that part. Under concurrency a positive delta proves that the device
worked, not that this one request did all of that work.
"""

from __future__ import annotations

import abc
import resource
import time
from pathlib import Path

from ovrunner.engines.base import is_npu
from ovrunner.errors import EngineUnavailableError

NPU_BUSY_PATH = Path("/sys/class/accel/accel0/device/npu_busy_time_us")


class BusyCounter(abc.ABC):
    name: str

    @abc.abstractmethod
    def read_us(self) -> int:
        """The current reading in microseconds. Raises `EngineUnavailableError` when the
        counter cannot be read (no such device)."""


class ProcessCpuCounter(BusyCounter):
    """CPU time of this process and its children: pipelines step in engine processes."""

    name = "process_cpu_time_us"

    def read_us(self) -> int:
        # CLOCK_PROCESS_CPUTIME_ID: user and system time of all threads of this process.
        own_ns = time.process_time_ns()
        # Children that have exited and been reaped (an unloaded model's engine process),
        # so the reading never goes back when one ends.
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        reaped_ns = int((reaped.ru_utime + reaped.ru_stime) * 1e9)
        return (own_ns + reaped_ns + _live_children_cpu_ns()) // 1000


def _live_children_cpu_ns() -> int:
    """On-CPU nanoseconds of every thread of every running child process (Linux `/proc`;
    0 where there is none)."""
    total = 0
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            for schedstat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
                try:
                    total += int(schedstat.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    pass  # the thread or process ended while we read
    return total


class NpuSysfsCounter(BusyCounter):
    name = "npu_busy_time_us"

    def __init__(self, path: Path = NPU_BUSY_PATH) -> None:
        self.path = path

    def read_us(self) -> int:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise EngineUnavailableError(
                f"the NPU busy counter {self.path} cannot be read: {exc}"
            ) from exc


def counter_for(
    device: str, npu_busy_path: Path = NPU_BUSY_PATH, choice: str = "auto"
) -> BusyCounter:
    """The counter that proves work on `device` (or the one `choice` names: "cpu", "npu").
    GPUs expose no such counter here, so a GPU generation is checked by the CPU time of the
    process that drives it."""
    if choice == "npu" or (choice == "auto" and is_npu(device)):
        return NpuSysfsCounter(npu_busy_path)
    return ProcessCpuCounter()
