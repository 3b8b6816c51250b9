"""Idle cores for the stacked executor's pool: /proc/stat over the driver's start-up."""

from __future__ import annotations

import os
import time

import pytest

from smoothlab.lab.run import cores
from smoothlab.lab.run.cores import MIN_WINDOW, CpuSnapshot, busy_jiffies, other_cores


def _line(user: int, idle: int, system: int = 0, iowait: int = 0, steal: int = 0) -> str:
    return f"cpu  {user} 0 {system} {idle} {iowait} 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_busy_jiffies_counts_everything_but_idle_and_iowait() -> None:
    assert busy_jiffies(_line(100, 900, system=50, iowait=30, steal=20)) == (170, 1100)
    assert busy_jiffies("cpu0 1 2 3 4 5 6 7 8\nintr 5\n") is None  # per-core lines only


def test_other_cores_subtract_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 cores over 1 s: 150 of 200 jiffies busy, 0.5 s of it this process's own
    since = CpuSnapshot(stat=(1000, 4000), own=3.0, wall=time.monotonic() - 1.0)
    monkeypatch.setattr(
        cores, "CpuSnapshot", lambda: CpuSnapshot((1150, 4200), 3.5, since.wall + 1)
    )
    assert other_cores(since, 2) == pytest.approx(1.0)
    # never below 0 (this process's CPU time ticks separately) nor above the cores
    monkeypatch.setattr(
        cores, "CpuSnapshot", lambda: CpuSnapshot((1010, 4200), 3.9, since.wall + 1)
    )
    assert other_cores(since, 2) == 0.0


def test_other_cores_fall_back_to_the_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "_read_stat", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 1.0, 1.0))
    assert other_cores(CpuSnapshot(), 4) == 4.0  # capped at the cores
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 1.0, 1.0))
    assert other_cores(CpuSnapshot(), 4) == 0.5


def test_the_window_is_at_least_min_window() -> None:
    start = time.monotonic()
    other_cores(CpuSnapshot(), 2)
    assert time.monotonic() - start >= MIN_WINDOW * 0.99


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs /proc/stat")
def test_a_busy_loop_here_is_not_counted_as_another_process() -> None:
    since = CpuSnapshot()
    end = time.monotonic() + 2 * MIN_WINDOW
    while time.monotonic() < end:  # this process keeps a core busy
        pass
    assert other_cores(since, os.cpu_count() or 1) < 0.9 * (os.cpu_count() or 1)
