"""Busy counters: monotonic microsecond readings of work a device has done.

A worker generation only counts as done on a device when that device's counter moved while
it ran. On an NPU the kernel driver exposes the time the NPU was busy in sysfs; on CPU the
process's CPU time (user plus system, every thread, OpenVINO's workers included) plays that
part. Under concurrency a positive delta proves that the device worked, not that this one
request did all of that work.
"""

from __future__ import annotations

import abc
import time
from pathlib import Path

from ovrunner.errors import EngineUnavailableError

NPU_BUSY_PATH = Path("/sys/class/accel/accel0/device/npu_busy_time_us")


class BusyCounter(abc.ABC):
    name: str

    @abc.abstractmethod
    def read_us(self) -> int:
        """The current reading in microseconds. Raises `EngineUnavailableError` when the
        counter cannot be read (no such device)."""


class ProcessCpuCounter(BusyCounter):
    name = "process_cpu_time_us"

    def read_us(self) -> int:
        # CLOCK_PROCESS_CPUTIME_ID: user and system time of all threads of this process.
        return time.process_time_ns() // 1000


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
    if choice == "npu" or (choice == "auto" and device.split(".")[0].upper() == "NPU"):
        return NpuSysfsCounter(npu_busy_path)
    return ProcessCpuCounter()
