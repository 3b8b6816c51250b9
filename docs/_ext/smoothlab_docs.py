"""Sphinx glue: generate the reference pages before reading, police docstrings, resolve aliases.

- ``builder-inited`` writes ``reference/`` (one page per public module, the CLI, the config keys)
  from the code, so a new public name or config key appears without editing the docs.
- ``autodoc-process-docstring`` warns (an error under ``-W``) when a public function or class
  has no docstring, and drops the docstring a constant inherits from its type (``dict``'s).
- ``missing-reference`` resolves what docstrings write naturally but Sphinx cannot: a member
  through a re-export (``smoothlab.OnlineLabelSmoothingLoss.next_epoch``), a short name
  (``IVON.predict``, ``DIVERGENCES``) when exactly one documented object ends with it, and a
  public submodule without a page of its own (its names are documented on its package's page).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from docutils import nodes
from smoothlab_apigen import write_api, write_if_changed
from smoothlab_labpages import cli_page, config_page
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)
REFERENCE = "reference"
_HOMES: dict[str, str] = {}


def _generate(app: Sphinx) -> None:
    outdir = Path(app.srcdir) / REFERENCE
    _HOMES.clear()
    _HOMES.update(write_api(outdir))
    write_if_changed(outdir / "cli.rst", cli_page())
    write_if_changed(outdir / "config.rst", config_page())


def _process_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    inherited = getattr(type(obj), "__doc__", None)
    if what == "data" and isinstance(inherited, str) and _same(lines, inherited):
        lines[:] = []  # a constant's entry would otherwise show ``dict``'s or ``int``'s help
    public = _HOMES.get(name) == name and what in ("function", "class", "exception")
    if public and not any(line.strip() for line in lines):
        logger.warning("public name %s has no docstring", name, type="smoothlab")


def _same(lines: list[str], docstring: str) -> bool:
    return "\n".join(lines).strip() == inspect.cleandoc(docstring).strip()


_PROSE: dict[str, list[str]] = {}


def _keep_prose(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """Before napoleon: a constant's doc comment is prose, not Google's ``type: text`` form."""
    if what in ("data", "attribute"):
        _PROSE[name] = list(lines)


def _restore_prose(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    if what in ("data", "attribute") and name in _PROSE:
        lines[:] = _PROSE.pop(name)


def _dealiased(target: str) -> str:
    """``target`` with its longest re-exported prefix replaced by that name's home."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        home = _HOMES.get(".".join(parts[:cut]))
        if home is not None:
            return ".".join([home, *parts[cut:]])
    return target


def _scoped(node: pending_xref, target: str) -> list[str]:
    """``target`` inside the class, then the module, where the reference was written, then as is."""
    module, cls = node.get("py:module"), node.get("py:class")
    scopes = [f"{module}.{cls}" if module and cls else None, module]
    return [f"{scope}.{target}" for scope in scopes if scope] + [target]


def _candidates(env: BuildEnvironment, node: pending_xref, target: str) -> list[str]:
    objects = env.get_domain("py").objects  # type: ignore[attr-defined]
    for name in _scoped(node, target):
        if _dealiased(name) in objects:
            return [_dealiased(name)]
    if node["reftype"] == "mod":
        parts = target.split(".")
        while len(parts) > 2 and not parts[-1].startswith("_"):
            parts.pop()
            if ".".join(parts) in objects:
                return [".".join(parts)]
        return []
    parts = target.split(".")
    for i in range(len(parts) - 2, 0, -1):  # smoothlab.losses.robust.peer_loss, re-exported
        shorter = _dealiased(".".join(parts[:i] + parts[i + 1 :]))
        if shorter in objects:
            return [shorter]
    suffix = "." + target
    return sorted({_dealiased(name) for name in objects if name.endswith(suffix)})


def _resolve(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    found = _candidates(env, node, target)
    if len(found) != 1:
        return None
    domain = env.get_domain("py")
    resolved = domain.resolve_any_xref(env, node["refdoc"], app.builder, found[0], node, contnode)
    return resolved[0][1] if resolved else None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _generate)
    app.connect("autodoc-process-docstring", _keep_prose, priority=100)
    app.connect("autodoc-process-docstring", _restore_prose, priority=900)
    app.connect("autodoc-process-docstring", _process_docstring, priority=950)
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
