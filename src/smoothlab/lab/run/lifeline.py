"""Process lifetimes: workers die with their driver, and processes end without the
interpreter's teardown.

A killed ``smoothlab run`` must not leave workers training.

A process-pool worker is a child of the driver, but nothing stops a child when its parent is
SIGKILLed: it keeps its memory and trains on. :func:`die_with` makes a worker exit within about
a second of the driver's death, by two means:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` through ``ctypes``: the kernel kills the worker
  when its parent dies (immediately; only for a worker that is the driver's child);
- everywhere, a daemon watchdog thread polling the driver's pid every ``interval`` seconds: the
  portable fallback, and the only means for a Ray worker, whose parent is Ray's raylet.

A process that has loaded torch ends slowly: after the ``atexit`` handlers, Python's shutdown
deallocates every module's objects (with ``torch._dynamo``, which any ``torch.optim`` optimizer
imports, and Triton loaded: 0.9 s on a 2-core EPYC, ``benchmarks/RESULTS.md``), memory the
operating system reclaims anyway. The ``smoothlab`` command (:func:`exit_now`) and the pool's
workers (:func:`spawn_context`, whose end the driver waits for) skip that teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing.context
import os
import signal
import sys
import threading
import time
from typing import NoReturn

__all__ = ["alive", "die_with", "exit_now", "spawn_context"]

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


def exit_now(code: int) -> NoReturn:
    """End this process with exit status ``code`` as a normal exit would, without the
    interpreter's teardown.

    A normal exit waits for the threads that are not daemons, runs the ``atexit`` handlers
    (:class:`weakref.finalize` callbacks such as temporary folders' removal, logging's flush,
    multiprocessing's and Ray's shutdown), flushes standard output and error, then deallocates
    every object (see the module docstring). This does the first three and ends the process
    with :func:`os._exit` instead of the fourth; only ``__del__`` methods of objects in
    reference cycles do not run, which Python does not promise at exit either. While a thread
    that is not a daemon is alive (an executor not shut down, which a normal exit first tells to
    stop), or while a profiler, tracer or debugger watches (``python -m cProfile`` writes its
    report after the program returns), it exits normally (:func:`sys.exit`).
    """
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if any(t.is_alive() and not t.daemon for t in others) or _observed():
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (``| head``), stream
            stream.flush()
    os._exit(code)


def _observed() -> bool:
    """Whether a profiler, tracer or debugger watches this process: ``sys.setprofile`` or
    ``sys.settrace`` hooks, or (Python 3.12+) a :mod:`sys.monitoring` tool."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(monitoring.get_tool(tool) for tool in range(6))


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned pool worker that ends with :func:`exit_now` once the pool's loop returns: it
    returns after the pool's shutdown, its results and exit notice sent. An exception out of
    the loop ends the process as usual (status 1, its traceback on standard error)."""

    def run(self) -> None:
        super().run()
        exit_now(0)


class _WorkerContext(multiprocessing.context.SpawnContext):
    Process = _WorkerProcess


def spawn_context() -> multiprocessing.context.SpawnContext:
    """The ``spawn`` start method (fork and torch's threads do not mix) for a
    :class:`~concurrent.futures.ProcessPoolExecutor` whose workers end without the
    interpreter's teardown (:func:`exit_now`): its ``shutdown(wait=True)`` waits for them.

    >>> spawn_context().get_start_method()
    'spawn'
    """
    return _WorkerContext()
