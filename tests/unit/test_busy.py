"""Busy counters: the process CPU time and the NPU's sysfs counter."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovrunner.busy import NpuSysfsCounter, ProcessCpuCounter, counter_for
from ovrunner.errors import EngineUnavailableError


def test_process_cpu_time_moves_with_work() -> None:
    counter = ProcessCpuCounter()
    before = counter.read_us()
    sum(i * i for i in range(300_000))
    assert counter.read_us() > before


def test_npu_counter_reads_sysfs(tmp_path: Path) -> None:
    path = tmp_path / "npu_busy_time_us"
    path.write_text("123456\n")
    assert NpuSysfsCounter(path).read_us() == 123456


def test_an_absent_npu_counter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match="npu_busy_time_us"):
        NpuSysfsCounter(tmp_path / "npu_busy_time_us").read_us()


def test_counter_follows_the_device(tmp_path: Path) -> None:
    assert isinstance(counter_for("CPU"), ProcessCpuCounter)
    assert isinstance(counter_for("GPU.1"), ProcessCpuCounter)
    npu = counter_for("NPU", tmp_path / "busy")
    assert isinstance(npu, NpuSysfsCounter) and npu.path == tmp_path / "busy"
