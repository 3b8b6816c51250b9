"""The results store: SQLite, one row per finished run, the run key as primary key.

Only the driver writes. A row is inserted in one transaction when a run has finished, so a killed
runner (SIGKILL included) leaves either the whole row or nothing; a rerun skips every key already
here. Weights are files next to the database, written to a temporary file, fsynced and renamed
(:func:`atomic_write`), so a reader never sees half a file; leftover temporary files from a
killed runner are removed when the store is opened.

Every run row carries its experiment id (:func:`~smoothlab.lab.plan.grid.experiment_id`);
stores written before the column existed are migrated when opened for writing, and read as they
are (the id computed from each row's config) when opened read-only. A failed run keeps its full
traceback in the ``failures`` table until the run succeeds. ``readonly=True`` opens the database
with SQLite's ``mode=ro`` (``immutable=1`` in a folder nobody can write): reporting never needs
to write, so archived results report from read-only media.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoothlab.lab.plan.grid import config_experiment_id, experiment_id
from smoothlab.lab.train.checkpoint import TMP_PREFIX, atomic_write

__all__ = [
    "DB_NAME",
    "DIVERGED",
    "ExperimentConfig",
    "Failure",
    "ResultsStore",
    "RunRow",
    "StoreError",
    "reason",
    "writable_folder",
]

DB_NAME = "results.sqlite"
#: How a diverged run's error (:class:`smoothlab.lab.train.loop.Diverged`) begins its last
#: line; its message says what went wrong by itself
DIVERGED = "smoothlab.lab.train.loop.Diverged: "


def reason(error: str) -> str:
    r"""What went wrong, from a failed run's traceback: its last line, a diverged run's without
    the exception's dotted name.

    >>> reason("Traceback (most recent call last):\n  ...\nValueError: bad\n")
    'ValueError: bad'
    >>> reason(DIVERGED + "diverged at epoch 3 (non-finite loss)\n"), reason(" ")
    ('diverged at epoch 3 (non-finite loss)', '(no message)')
    """
    if not error.strip():
        return "(no message)"
    line = error.strip().splitlines()[-1]
    return line.removeprefix(DIVERGED)


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
    finished_at REAL NOT NULL,
    experiment_id TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS experiment_configs (
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (id, name)
);
CREATE TABLE IF NOT EXISTS provenance (
    experiment_id TEXT PRIMARY KEY,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    label TEXT NOT NULL,
    noise_kind TEXT NOT NULL,
    noise_rate REAL NOT NULL,
    replicate INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""
_RUN_COLUMNS = (
    "key, experiment, method, label, noise_kind, noise_rate, replicate, config, metrics, curves, "
    "extras, wall_time"
)


class StoreError(OSError):
    """A results folder that cannot be opened as asked; the message names the path and why."""


@dataclass(frozen=True)
class RunRow:
    """One finished run as read back from the store; ``experiment_id`` "" = computed from
    ``config`` when stored."""

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
    experiment_id: str = ""


@dataclass(frozen=True)
class ExperimentConfig:
    """A resolved config stored with its experiment id and name."""

    id: str
    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """A run that failed (and has not succeeded since), with its full traceback."""

    key: str
    experiment_id: str
    label: str
    noise_kind: str
    noise_rate: float
    replicate: int
    error: str

    def where(self) -> str:
        """``ls(smoothing=0.2) symmetric 0.4 seed 1``: which cell of the grid failed."""
        return f"{self.label} {self.noise_kind} {self.noise_rate:g} seed {self.replicate}"

    def reason(self) -> str:
        r"""What went wrong (:func:`reason`).

        >>> Failure("k", "e", "ce", "none", 0.0, 0, "Traceback:\n  ...\nValueError: bad\n").reason()
        'ValueError: bad'
        """
        return reason(self.error)


def _connect(folder: Path, readonly: bool) -> sqlite3.Connection:
    """Open the database; a folder that cannot be written is named, with the cause."""
    path = folder / DB_NAME
    if readonly:
        if not path.is_file():
            raise FileNotFoundError(f"no results in {folder} (expected {path})")
        # immutable: no -shm/-wal files are needed, which a read-only folder could not hold
        mode = "ro" if os.access(folder, os.W_OK) else "ro&immutable=1"
        return sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode={mode}", uri=True)
    writable_folder(folder)
    return sqlite3.connect(path, timeout=30)


def writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed; a folder (or database) that cannot be written is a
    :class:`StoreError` naming it and saying that it is read-only, before sqlite's own
    "unable to open database file" could."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create the results folder {folder}: {error.strerror}") from None
    path = folder / DB_NAME
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise StoreError(
            f"the results folder {folder} is read-only; report it elsewhere with "
            f"`smoothlab report {folder} --out DIR`, or run with --out on a writable folder"
        )


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

    def __init__(self, folder: str | Path, *, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.readonly = readonly
        self.db = _connect(self.folder, readonly)
        if readonly:
            return
        for stray in self.folder.rglob(TMP_PREFIX + "*"):
            stray.unlink(missing_ok=True)  # left by a runner killed mid-write
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        self.db.executescript(_SCHEMA)

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    def _migrate(self) -> None:
        """Bring a store written before experiment ids to the current schema, in place."""
        columns = self._columns("runs")
        with self.db:
            if columns and "experiment_id" not in columns:
                self.db.execute(
                    "ALTER TABLE runs ADD COLUMN experiment_id TEXT NOT NULL DEFAULT ''"
                )
                for key, config in self.db.execute("SELECT key, config FROM runs").fetchall():
                    ident = experiment_id(json.loads(config))
                    self.db.execute("UPDATE runs SET experiment_id = ? WHERE key = ?", (ident, key))
            if self._columns("experiments"):  # the old table: one config per name
                self.db.executescript(_SCHEMA)
                old = self.db.execute("SELECT name, config, updated_at FROM experiments").fetchall()
                for name, config, updated in old:
                    ident = config_experiment_id(json.loads(config))
                    values = (ident, name, config, updated)
                    self.db.execute(
                        "INSERT OR IGNORE INTO experiment_configs VALUES (?, ?, ?, ?)", values
                    )
                self.db.execute("DROP TABLE experiments")

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
        """Store the resolved config of an experiment under its id and name (replacing an older
        one of that id and name).

        Keys keep their order (not sorted): the order of ``[methods.NAME]`` tables is the order
        of the report's tables and legends (:class:`~smoothlab.lab.report.order.RunOrder`).
        """
        values = (config_experiment_id(config), name, json.dumps(config), time.time())
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO experiment_configs VALUES (?, ?, ?, ?)", values)

    def experiment_configs(self) -> list[ExperimentConfig]:
        """Every stored config with its experiment id, oldest first (an old store's too)."""
        if self._columns("experiment_configs"):
            query = "SELECT id, name, config FROM experiment_configs ORDER BY updated_at, name"
            rows = self.db.execute(query).fetchall()
            return [ExperimentConfig(i, n, json.loads(c)) for i, n, c in rows]
        if not self._columns("experiments"):
            return []
        rows = self.db.execute(
            "SELECT name, config FROM experiments ORDER BY updated_at"
        ).fetchall()
        return [
            ExperimentConfig(config_experiment_id(json.loads(c)), n, json.loads(c)) for n, c in rows
        ]

    def experiments(self) -> dict[str, dict[str, Any]]:
        """Experiment name -> its latest resolved config, by name."""
        latest = {stored.name: stored.config for stored in self.experiment_configs()}
        return dict(sorted(latest.items()))

    def finished_keys(self) -> set[str]:
        """Keys of every run stored so far."""
        return {key for (key,) in self.db.execute("SELECT key FROM runs")}

    def add_run(self, row: RunRow, weights: bytes = b"") -> None:
        """Write the weights file, then the row in one transaction (a duplicate key is ignored);
        the run's failure, if an earlier attempt failed, is forgotten."""
        if weights:
            atomic_write(self.weights_path(row.key), weights)
        ident = row.experiment_id or experiment_id(row.config)
        values = (
            row.key, row.experiment, row.method, row.label, row.noise_kind, row.noise_rate,
            row.replicate, json.dumps(row.config, sort_keys=True), json.dumps(row.metrics),
            json.dumps(row.curves), json.dumps(row.extras), row.wall_time, time.time(), ident,
        )  # fmt: skip
        columns = f"{_RUN_COLUMNS}, finished_at, experiment_id"
        with self.db:
            self.db.execute(
                f"INSERT OR IGNORE INTO runs ({columns}) VALUES ({', '.join('?' * 14)})", values
            )
            self.db.execute("DELETE FROM failures WHERE key = ?", (row.key,))

    def runs(self, keys: set[str] | None = None) -> Iterator[RunRow]:
        """Stored runs (only ``keys`` when given), in the order they finished."""
        stored_id = "experiment_id" in self._columns("runs")
        columns = _RUN_COLUMNS + (", experiment_id" if stored_id else "")
        query = f"SELECT {columns} FROM runs ORDER BY finished_at"
        for record in self.db.execute(query).fetchall():
            if keys is not None and record[0] not in keys:
                continue
            config = json.loads(record[7])
            key, name, method, label, kind, rate, replicate = record[:7]
            metrics, curves, extras = (json.loads(part) for part in record[8:11])
            ident = record[12] if stored_id else experiment_id(config)
            yield RunRow(
                key, name, method, label, kind, rate, replicate, config, metrics, curves, extras,
                record[11], ident,
            )  # fmt: skip

    def save_provenance(self, ident: str, info: dict[str, Any]) -> None:
        """Keep what produced experiment ``ident``'s latest runs (replacing older provenance)."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO provenance VALUES (?, ?)", (ident, json.dumps(info))
            )

    def provenance(self) -> dict[str, dict[str, Any]]:
        """Experiment id -> its latest provenance (:mod:`~smoothlab.lab.run.provenance`)."""
        if not self._columns("provenance"):
            return {}
        rows = self.db.execute("SELECT experiment_id, info FROM provenance").fetchall()
        return {ident: json.loads(info) for ident, info in rows}

    def add_failure(self, failure: Failure) -> None:
        """Keep a failed run's full traceback (replacing an earlier one of the same run)."""
        values = (*dataclasses.astuple(failure), time.time())
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO failures VALUES ({', '.join('?' * 8)})", values
            )

    def failures(self, keys: set[str] | None = None) -> list[Failure]:
        """Runs whose last attempt failed (only ``keys`` when given), oldest failure first."""
        if not self._columns("failures"):
            return []
        query = f"SELECT {', '.join(Failure.__dataclass_fields__)} FROM failures ORDER BY failed_at"
        rows = [Failure(*record) for record in self.db.execute(query).fetchall()]
        return [f for f in rows if keys is None or f.key in keys]
