"""Several experiments in one results folder: each is reported on its own, never pooled.

An experiment is the runs sharing one :func:`~smoothlab.lab.plan.grid.experiment_id` (data,
model, training recipe); running a config with ``--set train.epochs=5`` first and in full later
leaves two in the same folder. With one experiment the report folder is as it always was; with
several, each gets a sub-folder ``<name>-<id[:8]>/`` holding its full report, and the top
``index.html`` lists them with what differs between them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smoothlab.lab.plan.grid import EXPERIMENT_PARTS
from smoothlab.lab.plan.schema import Config, config_to_dict
from smoothlab.lab.run.store import ExperimentConfig, RunRow

__all__ = ["Experiment", "differences", "group_experiments", "index_page"]


@dataclass(frozen=True)
class Experiment:
    """The stored runs of one experiment and the resolved configs that asked for them."""

    id: str
    name: str
    rows: tuple[RunRow, ...]
    configs: tuple[dict[str, Any], ...]

    @property
    def folder(self) -> str:
        """The sub-folder of its report: ``base-1a2b3c4d``."""
        return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', self.name)}-{self.id[:8]}"


def group_experiments(
    rows: Sequence[RunRow], stored: Sequence[ExperimentConfig]
) -> list[Experiment]:
    """Runs grouped by experiment, in the order each experiment's first run finished; named by
    the latest config stored for it.

    >>> def row(key, ident):
    ...     return RunRow(key, "base", "ce", "ce", "none", 0.0, 0, {}, {}, {}, {}, 1.0, ident)
    >>> [(e.id, len(e.rows)) for e in group_experiments([row("a", "x"), row("b", "y"),
    ...                                                     row("c", "x")], [])]
    [('x', 2), ('y', 1)]
    """
    by_id: dict[str, list[RunRow]] = {}
    for row in rows:
        by_id.setdefault(row.experiment_id, []).append(row)
    names = {s.id: s.name for s in stored}
    return [
        Experiment(
            ident,
            names.get(ident, members[0].experiment),
            tuple(members),
            tuple(s.config for s in stored if s.id == ident),
        )
        for ident, members in by_id.items()
    ]


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flat(f"{prefix}.{key}" if prefix else key, inner))
        return flat
    return {prefix: value}


# what a run stored without [calibration] was measured with
_DEFAULT_CALIBRATION = config_to_dict(Config())["calibration"]


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run's config that make its experiment; runs with the default
    ``[calibration]`` leave it out of their config, so it is filled in to compare."""
    parts = {part: config.get(part) for part in EXPERIMENT_PARTS}
    return {**parts, "calibration": config.get("calibration") or _DEFAULT_CALIBRATION}


def differences(experiments: Sequence[Experiment]) -> dict[str, list[str]]:
    """Experiment id -> ``key = value`` for every key of the shared recipe (data, model,
    ``[train]``, exact noise, ``[calibration]``) whose value is not the same in all
    ``experiments``.

    >>> def exp(ident, epochs):
    ...     config = {"train": {"epochs": epochs, "lr": 0.1}}
    ...     run = RunRow("k", "b", "ce", "ce", "none", 0.0, 0, config, {}, {}, {}, 1.0, ident)
    ...     return Experiment(ident, "b", (run,), ())
    >>> differences([exp("x", 3), exp("y", 10)])
    {'x': ['train.epochs = 3'], 'y': ['train.epochs = 10']}
    >>> calibrated = exp("z", 3)
    >>> calibrated.rows[0].config["calibration"] = {**_DEFAULT_CALIBRATION, "methods": ["vector"]}
    >>> differences([exp("x", 3), calibrated])
    {'x': ['calibration.methods = [temperature]'], 'z': ['calibration.methods = [vector]']}
    """
    flats = {e.id: _flat("", _recipe(e.rows[0].config)) for e in experiments}
    keys = sorted({key for flat in flats.values() for key in flat})
    varying = [k for k in keys if len({repr(flat.get(k)) for flat in flats.values()}) > 1]
    return {
        ident: [f"{key} = {flat.get(key)!r}".replace("'", "") for key in varying]
        for ident, flat in flats.items()
    }


def index_page(experiments: Sequence[Experiment], style: str) -> str:
    """The top page of a folder with several experiments: one line each, linked to its report,
    with what differs between them one setting to a line (a long recipe wraps in its cell).

    >>> def exp(ident, epochs, lr):
    ...     config = {"train": {"epochs": epochs, "lr": lr}}
    ...     run = RunRow("k", "b", "ce", "ce", "none", 0.0, 0, config, {}, {}, {}, 1.0, ident)
    ...     return Experiment(ident, "b", (run,), ())
    >>> page = index_page([exp("x", 3, 0.1), exp("y", 10, 0.2)], "")
    >>> "<td>train.epochs = 3<br>train.lr = 0.1</td>" in page
    True
    """
    diff = differences(experiments)
    lines = []
    for e in experiments:
        methods = ", ".join(dict.fromkeys(row.method for row in e.rows))
        what = "<br>".join(html.escape(d) for d in diff[e.id]) or "same recipe"  # one a line
        lines.append(
            f"<tr><td><a href='{html.escape(e.folder)}/index.html'>{html.escape(e.name)}</a></td>"
            f"<td><code>{e.id}</code></td><td>{len(e.rows)}</td><td>{html.escape(methods)}</td>"
            f"<td>{what}</td></tr>"
        )
    head = "".join(f"<th>{t}</th>" for t in ("experiment", "id", "runs", "methods", "differs"))
    return (
        "<!doctype html><meta charset='utf-8'><title>smoothlab: experiments</title>"
        f"<style>{style}</style><h1>{len(experiments)} experiments in this results folder</h1>"
        "<p>Runs of different experiments (different data, model or training recipe) are never "
        "averaged together; each has its own report.</p>"
        f"<table class='index'><tr>{head}</tr>{''.join(lines)}</table>"
    )
