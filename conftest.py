"""Collection for the whole tree: skip the doctests of framework glue whose framework is absent.

``smoothlab.integrations.lightning`` and ``.hf`` import their framework at module level
(their callbacks subclass its classes), so doctest collection would fail without it.
"""

from __future__ import annotations

import importlib.util

_GLUE = {"lightning": ["lightning"], "hf": ["transformers", "accelerate"]}

collect_ignore_glob = [
    f"src/smoothlab/integrations/{module}.py"
    for module, packages in _GLUE.items()
    if any(importlib.util.find_spec(package) is None for package in packages)
]
