"""Workers die with their driver: a killed ``smoothlab run`` must not leave workers training.

A process-pool worker is a child of the driver, but nothing stops a child when its parent is
SIGKILLed: it keeps its memory and trains on. :func:`die_with` makes a worker exit within about
a second of the driver's death, by two means:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ``ctypes``: the kernel kills the worker
  when its parent dies (immediately; only for a worker that is the driver's child);
- everywhere, a daemon watchdog thread polling the driver's pid every ``interval`` seconds: the
  portable fallback, and the only means for a Ray worker, whose parent is Ray's raylet.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["alive", "die_with"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_watched: set[int] = set()  # a Ray worker runs many tasks: one watchdog per driver


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything).

    >>> alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _watch(driver: int, child: bool, interval: float) -> None:
    # a child is re-parented when its parent dies: that also guards against a reused pid
    while alive(driver) and (not child or os.getppid() == driver):
        time.sleep(interval)
    os._exit(1)  # no cleanup: the driver that would receive our results is gone


def die_with(driver: int, *, interval: float = 0.5) -> None:
    """Make this process exit soon after process ``driver`` dies (see the module docstring)."""
    if driver in _watched:
        return
    _watched.add(driver)
    child = os.getppid() == driver
    if sys.platform.startswith("linux") and child:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != driver:  # the driver died before prctl took effect
            os._exit(1)
    threading.Thread(target=_watch, args=(driver, child, interval), daemon=True).start()
