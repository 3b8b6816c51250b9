"""One runner per results folder: an exclusive lock on ``FOLDER/.smoothlab.lock``.

Two ``smoothlab run`` on one folder would each train every unfinished run (double the compute,
and the second's rows ignored). The lock is ``flock`` on a file holding the holder's pid; the
kernel drops it when the holder exits, however it exits (SIGKILL included), so a stale lock never
blocks a rerun. A second runner fails at once with a line naming the holder's pid, or waits for
it (``wait=True``, the CLI's ``--wait``). Reporting takes no lock: it only reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from smoothlab.lab.run.store import writable_folder

__all__ = ["LOCK_NAME", "FolderLocked", "folder_lock"]

LOCK_NAME = ".smoothlab.lock"


class FolderLocked(RuntimeError):
    """Another runner holds the results folder; the message names its pid."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the lock of ``folder`` for the ``with`` block; raise :class:`FolderLocked` when
    another process holds it, unless ``wait`` (then block until it is free).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with folder_lock(folder):
    ...     with folder_lock(folder):  # doctest: +ELLIPSIS
    ...         pass
    Traceback (most recent call last):
    ...
    smoothlab.lab.run.lock.FolderLocked: the results folder /... is in use by another smoothlab \
run (pid ...); wait for it to finish, or run again with --wait
    """
    folder = Path(folder)
    writable_folder(folder)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise FolderLocked(
                    f"the results folder {folder} is in use by another smoothlab run (pid "
                    f"{holder}); wait for it to finish, or run again with --wait"
                ) from None
            print(f"waiting for smoothlab pid {holder} to release {folder}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiter)
