"""Experiment identity (issue 13, section 1): runs of different experiments are never pooled, a
folder with several reports each on its own, and stores written before experiment ids open."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

from smoothlab.lab.plan.grid import config_experiment_id, expand_grid, experiment_id, run_key
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.schema import config_to_dict
from smoothlab.lab.report.html import write_report
from smoothlab.lab.report.summary import summarize
from smoothlab.lab.run.store import ResultsStore, RunRow

BASE = {"name": "base", "seeds": 1, "noise": {"rates": [0.0]}, "methods": {"ce": {}}}


def _stored_run(epochs: int, accuracy: float) -> tuple[dict[str, object], RunRow]:
    """The one run of ``base.toml --set train.epochs=N``, as the runner stores it."""
    config = config_from_dict({**BASE, "train": {"epochs": epochs}})
    (run,) = expand_grid(config)
    row = RunRow(
        run_key(run), "base", "ce", run.label(), run.noise_kind, run.noise_rate, run.replicate,
        run.to_dict(), {"accuracy": accuracy}, {}, {}, 1.0, experiment_id(run.to_dict()),
    )  # fmt: skip
    return config_to_dict(config), row


def _summary_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_the_pooling_reproduction_reports_two_experiments(tmp_path: Path) -> None:
    # smoothlab run base.toml --out mix; smoothlab run base.toml --set train.epochs=10 --out mix
    store = ResultsStore(tmp_path / "mix")
    short_config, short = _stored_run(3, 0.9)
    long_config, long = _stored_run(10, 0.98)
    for config, row in ((short_config, short), (long_config, long)):
        store.save_experiment("base", config)
        store.add_run(row)
    rows = list(store.runs())
    store.close()
    assert short.experiment_id != long.experiment_id
    assert [s.seeds for s in summarize(rows)] == [1, 1]  # two cells, not one of two seeds
    page = write_report(tmp_path / "mix")
    report = tmp_path / "mix" / "report"
    assert page == report / "index.html"
    assert not (report / "summary.csv").exists()  # no file speaks for both
    index = page.read_text()
    assert "2 experiments" in index and "train.epochs = 3" in index and "train.epochs = 10" in index
    folders = sorted(p for p in report.iterdir() if p.is_dir())
    assert [p.name for p in folders] == sorted(f"base-{r.experiment_id[:8]}" for r in (short, long))
    means = set()
    for folder in folders:
        (line,) = _summary_csv(folder / "summary.csv")
        assert line["seeds"] == "1"
        means.add(float(line["accuracy_mean"]))
        assert "train.epochs" in (folder / "index.html").read_text()
    assert means == {0.9, 0.98}


def test_one_experiment_reports_as_before_and_its_id_ignores_the_grid_axes(tmp_path: Path) -> None:
    more = config_from_dict({**BASE, "seeds": 3, "noise": {"rates": [0.0, 0.2]}, "methods": {
        "ce": {}, "ls": {"smoothing": [0.1, 0.2]}}})  # fmt: skip
    ids = {experiment_id(run.to_dict()) for run in expand_grid(more)}
    assert ids == {config_experiment_id(config_to_dict(more))}
    assert ids == {experiment_id(_stored_run(20, 0.9)[1].config)}  # epochs 20 is the default
    config, row = _stored_run(3, 0.9)
    store = ResultsStore(tmp_path)
    store.save_experiment("base", config)
    store.add_run(row)
    store.close()
    page = write_report(tmp_path)
    assert page == tmp_path / "report" / "index.html"
    (line,) = _summary_csv(tmp_path / "report" / "summary.csv")
    assert line["seeds"] == "1" and float(line["accuracy_mean"]) == 0.9


_OLD_SCHEMA = """
CREATE TABLE runs (key TEXT PRIMARY KEY, experiment TEXT NOT NULL, method TEXT NOT NULL,
    label TEXT NOT NULL, noise_kind TEXT NOT NULL, noise_rate REAL NOT NULL,
    replicate INTEGER NOT NULL, config TEXT NOT NULL, metrics TEXT NOT NULL, curves TEXT NOT NULL,
    extras TEXT NOT NULL, wall_time REAL NOT NULL, finished_at REAL NOT NULL);
CREATE TABLE experiments (name TEXT PRIMARY KEY, config TEXT NOT NULL, updated_at REAL NOT NULL);
"""


def _old_store(folder: Path) -> list[RunRow]:
    """A results folder as the lab wrote it before experiment ids."""
    folder.mkdir()
    rows = [_stored_run(3, 0.9), _stored_run(10, 0.98)]
    db = sqlite3.connect(folder / "results.sqlite")
    db.executescript(_OLD_SCHEMA)
    for time, (config, row) in enumerate(rows):
        values = (
            row.key, row.experiment, row.method, row.label, row.noise_kind, row.noise_rate,
            row.replicate, json.dumps(row.config), json.dumps(row.metrics), "{}", "{}", 1.0, time,
        )  # fmt: skip
        db.execute(f"INSERT INTO runs VALUES ({', '.join('?' * 13)})", values)
        db.execute(
            "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?)",
            ("base", json.dumps(config), time),
        )
    db.commit()
    db.close()
    return [row for _, row in rows]


def test_an_old_store_opens_read_only_as_it_is_and_is_migrated_when_written(tmp_path: Path) -> None:
    expected = [row.experiment_id for row in _old_store(tmp_path / "old")]
    readonly = ResultsStore(tmp_path / "old", readonly=True)
    assert [row.experiment_id for row in readonly.runs()] == expected
    assert [s.id for s in readonly.experiment_configs()] == [expected[1]]
    readonly.close()
    assert write_report(tmp_path / "old").name == "index.html"
    store = ResultsStore(tmp_path / "old")
    assert [row.experiment_id for row in store.runs()] == expected
    assert list(store.experiments()) == ["base"]
    store.close()
    db = sqlite3.connect(tmp_path / "old" / "results.sqlite")
    stored = [
        ident for (ident,) in db.execute("SELECT experiment_id FROM runs ORDER BY finished_at")
    ]
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert stored == expected
    assert tables == {"runs", "experiment_configs", "failures", "provenance"}
