"""The display order of stored runs: the same for every table, CSV file and plot legend.

Runs finish in whatever order the workers happen to finish them, and the store returns them in
that order; nothing shown to the user may depend on it. :class:`RunOrder` sorts runs by:

1. method, in the order the experiment configs list them (``[methods.NAME]`` tables); methods
   that no config lists (the ``ce`` teachers that ``ls-teacher`` adds) come after, in the order
   of :data:`smoothlab.lab.plan.methods.METHODS`;
2. method parameters, by name, each ascending (numbers numerically, then text);
3. noise kind: the clean runs (kind ``none``) first, then the order of ``noise.kinds``, then any
   other kind alphabetically;
4. noise rate, ascending; then replicate, then run key (so the order is total).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from smoothlab.lab.plan.methods import METHODS
from smoothlab.lab.run.store import RunRow

__all__ = ["RunOrder"]

GroupKey = tuple[Any, ...]


def _value_key(value: object) -> tuple[int, float, str]:
    """Numbers (and bools) before text; numbers by value, text alphabetically.

    >>> sorted([0.3, "ce", -8, True], key=_value_key)
    [-8, 0.3, True, 'ce']
    """
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))


@dataclass(frozen=True)
class RunOrder:
    """The methods and noise kinds in the order the experiment configs list them.

    >>> order = RunOrder(methods=("ls", "ce"), kinds=("pairflip", "symmetric"))
    >>> order.method_rank("ce"), order.method_rank("sam"), order.kind_rank("none")
    (1, 11, -1)
    """

    methods: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    @classmethod
    def from_configs(cls, configs: Iterable[Mapping[str, Any]]) -> RunOrder:
        """The order of resolved configs (:func:`~smoothlab.lab.plan.schema.config_to_dict`), first
        listing wins when several experiments share a results folder.

        >>> RunOrder.from_configs([{"methods": {"ls": {}, "ce": {}}, "noise": {"kinds": ["a"]}},
        ...                        {"methods": {"sam": {}, "ls": {}}}])
        RunOrder(methods=('ls', 'ce', 'sam'), kinds=('a',))
        """
        methods: dict[str, None] = {}
        kinds: dict[str, None] = {}
        for config in configs:
            methods.update(dict.fromkeys(config.get("methods", {})))
            kinds.update(dict.fromkeys(config.get("noise", {}).get("kinds", ())))
        return cls(tuple(methods), tuple(kinds))

    def method_rank(self, method: str) -> int:
        """Position of ``method``: listed ones first, then the registry's order."""
        if method in self.methods:
            return self.methods.index(method)
        registry = list(METHODS)
        return len(self.methods) + (registry.index(method) if method in registry else len(registry))

    def kind_rank(self, kind: str) -> int:
        """Position of noise ``kind``: ``none`` (clean) first, then listed, then the rest."""
        if kind == "none":
            return -1
        return self.kinds.index(kind) if kind in self.kinds else len(self.kinds)

    def group_key(self, row: RunRow) -> GroupKey:
        """The sort key shared by the seeds of one method variant under one noise setting of one
        experiment: runs of different experiments never share a group, so never a mean."""
        params = row.config.get("params", {})
        by_name = tuple((name, _value_key(params[name])) for name in sorted(params))
        kind = (self.kind_rank(row.noise_kind), row.noise_kind)
        method = (self.method_rank(row.method), row.method)
        return (*method, by_name, row.label, *kind, row.noise_rate, row.experiment_id)

    def sort(self, rows: Iterable[RunRow]) -> list[RunRow]:
        """``rows`` in display order, whatever order they finished in."""
        return sorted(rows, key=lambda row: (self.group_key(row), row.replicate, row.key))
