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


def test_process_cpu_time_counts_child_processes_running_and_ended() -> None:
    """Pipelines step in engine processes: their work counts while they run and after they
    have ended, so the reading never goes back."""
    import subprocess
    import sys

    counter = ProcessCpuCounter()
    before = counter.read_us()
    burn = "sum(i * i for i in range(3_000_000)); print(flush=True); input()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    child.stdout.readline()  # the child has done its work and waits
    running = counter.read_us()
    child.stdin.close()
    child.wait()
    ended = counter.read_us()
    # The parent itself spent a few milliseconds at most; the child well over 50.
    assert running - before > 50_000
    assert ended >= running
