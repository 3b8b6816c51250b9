"""Labels that show what tells a method's variants apart, not every parameter it has.

A stored run's label (:meth:`smoothlab.lab.plan.methods.Method.label`) names every parameter
that differs from its default, so ``ivon(weight_decay=0.001, lr_schedule=cosine,
warmup_epochs=1)`` is one legend entry and a 60-character column even when the grid has one IVON
variant. In a report the label keeps the method's primary parameters (``ls``'s smoothing rate)
and those whose values differ between the variants of that method in the report; the resolved
configs at the bottom of the page still give every value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from smoothlab.lab.plan.methods import METHODS
from smoothlab.lab.run.store import RunRow

__all__ = ["short_labels"]


def short_labels(rows: Sequence[RunRow]) -> list[RunRow]:
    """``rows`` with labels that show only the primary parameters and what differs.

    >>> def row(method, **params):
    ...     config = {"params": params}
    ...     return RunRow("k", "x", method, "?", "none", 0.0, 0, config, {}, {}, {}, 1.0)
    >>> rows = [row("ivon", lr=0.2, weight_decay=0.001), row("ls", smoothing=0.1),
    ...         row("sam", rho=0.05, adaptive=False), row("sam", rho=0.05, adaptive=True)]
    >>> [r.label for r in short_labels(rows)]
    ['ivon', 'ls(smoothing=0.1)', 'sam(rho=0.05, adaptive=False)', 'sam(rho=0.05, adaptive=True)']
    """
    variants: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        variants.setdefault(row.method, []).append(row.config.get("params", {}))
    shown: dict[str, list[str]] = {}
    for method, params in variants.items():
        known = METHODS.get(method)
        primary = known.primary if known else ()
        names = list(dict.fromkeys(name for p in params for name in p))
        if known:  # the method's own field order (the store keeps parameters sorted by name)
            fields = [f.name for f in dataclasses.fields(known)]
            names.sort(key=lambda name: fields.index(name) if name in fields else len(fields))
        shown[method] = [
            name
            for name in names
            if name in primary or len({repr(p.get(name)) for p in params}) > 1
        ]
    relabelled = []
    for row in rows:
        params = row.config.get("params", {})
        parts = [f"{name}={params[name]}" for name in shown[row.method] if name in params]
        label = f"{row.method}({', '.join(parts)})" if parts else row.method
        relabelled.append(dataclasses.replace(row, label=label))
    return relabelled
