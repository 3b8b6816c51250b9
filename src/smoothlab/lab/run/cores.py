"""How many cores other processes keep busy: what the ``stacked`` executor sizes its pool by.

The load average lags by a minute: right after a command that used every core it still reads
about 2 on an idle 2-core machine, so a grid started then would train in the driver alone. Here
the busy time of all cores (``/proc/stat``) is measured over a window of the driver's own
start-up, minus the driver's own CPU time in that window:

.. math::
    \\text{others} = \\text{cores} \\cdot
    \\frac{\\Delta\\,\\text{busy jiffies}}{\\Delta\\,\\text{all jiffies}}
    - \\frac{\\Delta\\,\\text{own CPU time}}{\\Delta\\,\\text{wall time}}

in cores. Where ``/proc/stat`` is missing (not Linux) the load average stands in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MIN_WINDOW", "CpuSnapshot", "busy_jiffies", "other_cores"]

#: The shortest window measured (seconds): at 100 jiffies a second on 2 cores, 50 ticks.
MIN_WINDOW = 0.25
_STAT = Path("/proc/stat")


def busy_jiffies(stat: str) -> tuple[int, int] | None:
    """Busy and total jiffies of all cores from the text of ``/proc/stat`` (its ``cpu`` line:
    user nice system idle iowait irq softirq steal ...; idle and iowait are not busy; guest time
    is counted in user already); None if the line is missing.

    >>> busy_jiffies("cpu  100 5 20 800 10 1 2 3 0 0\\ncpu0 50 2 10 400 5 0 1 1 0 0\\n")
    (131, 941)
    >>> busy_jiffies("intr 1 2 3") is None
    True
    """
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            user, nice, system, idle, iowait, *rest = (int(v) for v in fields[1:9])
            busy = user + nice + system + sum(rest)  # irq, softirq, steal
            return busy, busy + idle + iowait
    return None


def _read_stat() -> tuple[int, int] | None:
    try:
        return busy_jiffies(_STAT.read_text())
    except OSError:
        return None


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass(frozen=True)
class CpuSnapshot:
    """The machine's busy jiffies, this process's CPU time and the wall clock, at one moment."""

    stat: tuple[int, int] | None = field(default_factory=lambda: _read_stat())
    own: float = field(default_factory=_own_cpu)
    wall: float = field(default_factory=time.monotonic)


def other_cores(since: CpuSnapshot, cpus: int) -> float:
    """Cores kept busy by other processes since ``since`` (at least :data:`MIN_WINDOW` seconds:
    this waits out the rest), in ``[0, cpus]``; the 1-minute load average where ``/proc/stat``
    cannot be read.

    >>> 0.0 <= other_cores(CpuSnapshot(), os.cpu_count() or 1) <= (os.cpu_count() or 1)
    True
    """
    time.sleep(max(0.0, since.wall + MIN_WINDOW - time.monotonic()))
    now = CpuSnapshot()
    if since.stat is None or now.stat is None or now.stat[1] <= since.stat[1]:
        return min(float(cpus), os.getloadavg()[0])
    share = (now.stat[0] - since.stat[0]) / (now.stat[1] - since.stat[1])  # of all cores
    own = (now.own - since.own) / (now.wall - since.wall)  # cores this process kept busy
    return min(float(cpus), max(0.0, share * cpus - own))
