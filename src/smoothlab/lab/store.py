"""The results store: SQLite, one row per finished run, the run key as primary key.

Only the driver writes. A row is inserted in one transaction when a run has finished, so a killed
runner (SIGKILL included) leaves either the whole row or nothing; a rerun skips every key already
here. Weights are files next to the database, written to a temporary file, fsynced and renamed
(:func:`atomic_write`), so a reader never sees half a file; leftover temporary files from a
killed runner are removed when the store is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DB_NAME", "TMP_PREFIX", "ResultsStore", "RunRow", "atomic_write"]

DB_NAME = "results.sqlite"
TMP_PREFIX = ".tmp-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    method TEXT NOT NULL,
    label TEXT NOT NULL,
    noise_kind TEXT NOT NULL,
    noise_rate REAL NOT NULL,
    replicate INTEGER NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    curves TEXT NOT NULL,
    extras TEXT NOT NULL,
    wall_time REAL NOT NULL,
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, rename.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     atomic_write(Path(folder) / "sub" / "w.bin", b"123")
    ...     print(sorted(p.name for p in Path(folder, "sub").iterdir()))
    ['w.bin']
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide reports from other users
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


@dataclass(frozen=True)
class RunRow:
    """One finished run as read back from the store."""

    key: str
    experiment: str
    method: str
    label: str
    noise_kind: str
    noise_rate: float
    replicate: int
    config: dict[str, Any]
    metrics: dict[str, float]
    curves: dict[str, list[float]]
    extras: dict[str, Any]
    wall_time: float


class ResultsStore:
    """A results folder: ``results.sqlite``, ``weights/<key>.safetensors``, ``checkpoints/``.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = ResultsStore(folder.name)
    >>> row = RunRow("k1", "demo", "ce", "ce", "none", 0.0, 0, {}, {"accuracy": 0.9}, {}, {}, 1.5)
    >>> store.add_run(row, b"weights")
    >>> store.add_run(row)  # the same key again: ignored
    >>> store.finished_keys(), [r.metrics for r in store.runs()]
    ({'k1'}, [{'accuracy': 0.9}])
    >>> store.weights_path("k1").relative_to(folder.name).as_posix()
    'weights/k1.safetensors'
    >>> store.checkpoint_dir("k1").relative_to(folder.name).as_posix()
    'checkpoints/k1'
    >>> store.close(); folder.cleanup()
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stray in self.folder.rglob(TMP_PREFIX + "*"):
            stray.unlink(missing_ok=True)  # left by a runner killed mid-write
        self.db = sqlite3.connect(self.folder / DB_NAME, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database (checkpointing the WAL into the main file)."""
        self.db.close()

    def weights_path(self, key: str) -> Path:
        """Where the selected model of run ``key`` is kept."""
        return self.folder / "weights" / f"{key}.safetensors"

    def checkpoint_dir(self, key: str) -> Path:
        """Where run ``key`` keeps its mid-run checkpoint (removed once the run is stored)."""
        return self.folder / "checkpoints" / key

    def save_experiment(self, name: str, config: dict[str, Any]) -> None:
        """Store the resolved config of an experiment (replacing an older one of that name).

        Keys keep their order (not sorted): the order of ``[methods.NAME]`` tables is the order
        of the report's tables and legends (:class:`~smoothlab.lab.order.RunOrder`).
        """
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?)",
                (name, json.dumps(config), time.time()),
            )

    def experiments(self) -> dict[str, dict[str, Any]]:
        """Experiment name -> resolved config, by name."""
        rows = self.db.execute("SELECT name, config FROM experiments ORDER BY name")
        return {name: json.loads(config) for name, config in rows}

    def finished_keys(self) -> set[str]:
        """Keys of every run stored so far."""
        return {key for (key,) in self.db.execute("SELECT key FROM runs")}

    def add_run(self, row: RunRow, weights: bytes = b"") -> None:
        """Write the weights file, then the row in one transaction (a duplicate key is ignored)."""
        if weights:
            atomic_write(self.weights_path(row.key), weights)
        values = (
            row.key, row.experiment, row.method, row.label, row.noise_kind, row.noise_rate,
            row.replicate, json.dumps(row.config, sort_keys=True), json.dumps(row.metrics),
            json.dumps(row.curves), json.dumps(row.extras), row.wall_time, time.time(),
        )  # fmt: skip
        with self.db:
            self.db.execute(f"INSERT OR IGNORE INTO runs VALUES ({', '.join('?' * 13)})", values)

    def runs(self, keys: set[str] | None = None) -> Iterator[RunRow]:
        """Stored runs (only ``keys`` when given), in the order they finished."""
        query = "SELECT * FROM runs ORDER BY finished_at"
        for record in self.db.execute(query).fetchall():
            if keys is not None and record[0] not in keys:
                continue
            yield RunRow(
                key=record[0],
                experiment=record[1],
                method=record[2],
                label=record[3],
                noise_kind=record[4],
                noise_rate=record[5],
                replicate=record[6],
                config=json.loads(record[7]),
                metrics=json.loads(record[8]),
                curves=json.loads(record[9]),
                extras=json.loads(record[10]),
                wall_time=record[11],
            )
