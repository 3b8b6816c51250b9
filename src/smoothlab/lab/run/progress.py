"""Live progress: a bar for the grid and one per running run (rich), or plain lines when the
output is not a terminal (CI logs, pipes). Progress goes to stderr; tables go to stdout."""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol, TextIO

__all__ = ["PlainProgress", "Progress", "RichProgress", "ignore_progress", "make_progress"]


def ignore_progress(key: str, done: int, total: int) -> None:
    """The executors' epoch-event callback when the caller passes none: drops the event."""


class Progress(Protocol):
    """What the runner reports: epochs of running runs, finished runs, the end."""

    def epoch(self, key: str, done: int, total: int) -> None:
        """Run ``key`` has trained ``done`` of ``total`` epochs (called from a relay thread)."""

    def finished(self, key: str, line: str) -> None:
        """Run ``key`` ended; ``line`` summarises it."""

    def close(self) -> None:
        """Stop drawing."""


class PlainProgress:
    """One line per finished run: ``[ 3/36] label ... (2.1 s)``."""

    def __init__(self, total: int, done: int, labels: dict[str, str], stream: TextIO) -> None:
        self.total, self.done, self.labels, self.stream = total, done, labels, stream
        self.lock = threading.Lock()
        if done:
            print(f"resuming: {done} of {total} runs already finished", file=stream, flush=True)

    def epoch(self, key: str, done: int, total: int) -> None:
        pass

    def finished(self, key: str, line: str) -> None:
        with self.lock:
            self.done += 1
            width = len(str(self.total))
            print(f"[{self.done:{width}}/{self.total}] {line}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichProgress:
    """A grid bar plus a transient bar per running run, redrawn in place."""

    def __init__(self, total: int, done: int, labels: dict[str, str], stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.labels = labels
        self.console = Console(file=stream)
        self.bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.grid = self.bars.add_task("grid", total=total, completed=done)
        self.running: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.bars.start()

    def epoch(self, key: str, done: int, total: int) -> None:
        with self.lock:
            if key not in self.running:
                label = "  " + self.labels.get(key, key[:12])
                self.running[key] = self.bars.add_task(label, total=total)
            self.bars.update(self.running[key], completed=done)

    def finished(self, key: str, line: str) -> None:
        with self.lock:
            if key in self.running:
                self.bars.remove_task(self.running.pop(key))
            self.bars.advance(self.grid)
            self.console.print(line, highlight=False)

    def close(self) -> None:
        self.bars.stop()


def make_progress(
    total: int, done: int, labels: dict[str, str], *, stream: TextIO | None = None
) -> Progress:
    """Rich bars on a terminal, plain lines otherwise.

    >>> import io
    >>> out = io.StringIO()
    >>> progress = make_progress(12, 10, {}, stream=out)
    >>> progress.finished("key", "ce symmetric 0.2 seed 1: accuracy 0.912")
    >>> print(out.getvalue(), end="")
    resuming: 10 of 12 runs already finished
    [11/12] ce symmetric 0.2 seed 1: accuracy 0.912
    """
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress(total, done, labels, stream)
    return PlainProgress(total, done, labels, stream)
