"""Tables, CSV files and plot legends follow the config's order, never the order runs finished."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

from smoothlab.lab.plan.grid import expand_grid, run_key, seed_from
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.methods import METHODS
from smoothlab.lab.plan.schema import config_to_dict
from smoothlab.lab.report.html import write_report
from smoothlab.lab.report.order import RunOrder
from smoothlab.lab.report.summary import print_table, summarize
from smoothlab.lab.run.store import ResultsStore, RunRow

RAW = {
    "name": "unit",
    "seeds": 3,
    "noise": {"kinds": ["symmetric", "pairflip"], "rates": [0.4, 0.0, 0.2]},
    # listed out of registry order, a sweep listed out of numeric order, two IVON variants
    "methods": {"sam": {}, "ls": {"smoothing": [0.3, 0.1]}, "ce": {}, "ivon": {"lr": [0.2, 0.1]}},
}


def _reliability(confidence: float) -> dict[str, list[float]]:
    edges = [i / 15 for i in range(16)]
    count = [0.0] * 15
    count[min(14, int(confidence * 15))] = 50.0
    return {"edges": edges, "confidence": [confidence] * 15, "accuracy": [0.8] * 15, "count": count}


def _examples() -> dict[str, object]:
    part = {"x": [[0.1 * i] * 64 for i in range(4)], "label": [1] * 4, "noise": [0.5] * 4}
    return {"shape": [1, 8, 8], "most": part, "least": part}


def _rows() -> list[RunRow]:
    """One stored row per run of the real grid, with metrics that differ in the last bits."""
    rows = []
    for run in expand_grid(config_from_dict(RAW)):
        key = run_key(run)
        value = (seed_from(key) % 1000) / 997  # seeds of one group sum differently by order
        extras: dict[str, object] = {"reliability": _reliability(value)}
        if run.method == "ivon":
            extras["noisy_examples"] = _examples()
        metrics = {"accuracy": value, "ece": value / 3, "ece_ts": value / 7, "nll": 1 / value}
        curves = {"test_accuracy": [0.1, value]}
        where = (run.method, run.label(), run.noise_kind, run.noise_rate, run.replicate)
        rows.append(RunRow(key, "unit", *where, run.to_dict(), metrics, curves, extras, 1.0))
    return rows


def _report(folder: Path, rows: list[RunRow]) -> dict[str, bytes]:
    store = ResultsStore(folder)
    store.save_experiment("unit", config_to_dict(config_from_dict(RAW)))
    for row in rows:  # finished in this order
        store.add_run(row)
    store.close()
    page = write_report(folder)
    return {path.name: path.read_bytes() for path in sorted(page.parent.iterdir())}


def test_report_files_are_identical_whatever_order_the_runs_finished_in(tmp_path: Path) -> None:
    rows = _rows()
    shuffled = rows.copy()
    random.Random(7).shuffle(shuffled)
    first, again = _report(tmp_path / "a", rows), _report(tmp_path / "b", shuffled)
    assert list(again) == list(first)
    for file, data in first.items():
        assert again[file] == data, file
    assert {"summary.csv", "runs.csv", "index.html", "accuracy_vs_noise.png"} <= set(first)
    assert {"reliability.png", "curves.png", "noisy_examples.png"} <= set(first)


def _table(rows: list[RunRow]) -> str:
    out = io.StringIO()
    order = RunOrder.from_configs([config_to_dict(config_from_dict(RAW))])
    print_table(summarize(rows, order), out, title="unit")  # what `smoothlab run` prints
    return out.getvalue()


def test_rows_follow_the_config_then_parameters_then_kinds_then_rates() -> None:
    rows = _rows()
    shuffled = rows.copy()
    random.Random(3).shuffle(shuffled)
    assert _table(shuffled) == _table(rows[::-1])
    order = RunOrder.from_configs([config_to_dict(config_from_dict(RAW))])
    summary = summarize(shuffled, order)
    labels = list(dict.fromkeys(s.label for s in summary))
    assert labels == [
        "sam(rho=0.05)",
        "ls(smoothing=0.1)",
        "ls(smoothing=0.3)",
        "ce",
        "ivon(lr=0.1)",
        "ivon",
    ]
    settings = [(s.noise_kind, s.noise_rate) for s in summary if s.label == "ce"]
    assert settings == [
        ("none", 0.0),
        ("symmetric", 0.2),
        ("symmetric", 0.4),
        ("pairflip", 0.2),
        ("pairflip", 0.4),
    ]
    ordered = order.sort(shuffled)
    assert [r.replicate for r in ordered[:3]] == [0, 1, 2]
    assert order.sort(rows) == ordered
    assert summarize(shuffled, order) == summarize(rows, order)


def test_methods_no_config_lists_come_after_in_registry_order() -> None:
    order = RunOrder(methods=("sam",), kinds=("pairflip",))
    unknown = 1 + len(METHODS)  # after the listed one and the whole registry
    assert [order.method_rank(m) for m in ("sam", "ce", "ls", "nope")] == [0, 1, 2, unknown]
    assert [order.kind_rank(k) for k in ("none", "pairflip", "uniform")] == [-1, 0, 1]
    assert RunOrder.from_configs([]) == RunOrder()


def test_stored_configs_keep_the_order_of_their_methods(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.save_experiment("z", {"methods": {"sam": {}, "ce": {}}})
    store.save_experiment("a", {"methods": {"ls": {}, "sam": {}}})
    assert list(store.experiments()) == ["a", "z"]
    assert RunOrder.from_configs(store.experiments().values()).methods == ("ls", "sam", "ce")
    store.close()
