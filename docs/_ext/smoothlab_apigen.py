"""Write the API reference pages from the code at every build, so they cannot drift.

One page per public module: every top-level module of :mod:`smoothlab` whose name does not start
with an underscore, plus each public submodule whose ``__all__`` holds names that its package
does not export (``smoothlab.integrations.hf``, ``smoothlab.losses.robust``, ...). The lab's
stages (``smoothlab.lab.plan`` and the rest) are internal: the lab is documented by its own
``__all__``, its command line (:mod:`smoothlab_cli_pages`) and its config schema.

A name exported by several modules is documented in full once, in its home: the shortest
documented module (the top level excepted) that exports it and defines it (``obj.__module__``
inside it); elsewhere its entry says where to read it. Names come from ``__all__`` alone, so a
new public function appears on the site without any edit here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

PACKAGE = "smoothlab"
# Internal stages of the lab: their names are not public API (the lab's __all__ is).
INTERNAL_PREFIXES = ("smoothlab.lab.",)


def _exports(module: ModuleType) -> list[str]:
    return list(getattr(module, "__all__", []))


def _import(name: str, skip_missing: bool) -> ModuleType | None:
    """Import ``name``; None if ``skip_missing`` and a third-party module it needs is absent."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if skip_missing and error.name and not error.name.startswith(PACKAGE):
            return None
        raise


def _public_children(package: ModuleType, skip_missing: bool) -> list[str]:
    """Public submodules of ``package`` that export names their package does not."""
    if not hasattr(package, "__path__"):
        return []
    parent = set(_exports(package))
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        name = f"{package.__name__}.{info.name}"
        if info.name.startswith("_") or name.startswith(INTERNAL_PREFIXES):
            continue
        child = _import(name, skip_missing)
        if child is not None and set(_exports(child)) - parent:
            found.append(name)
    return found


def public_modules(*, skip_missing: bool = False) -> list[str]:
    """Every documented module, the top level first, then by name.

    A submodule that needs a framework which is not installed (``lightning``, ``transformers``)
    fails the build, since the ``docs`` extra installs every framework the site documents;
    ``skip_missing=True`` leaves such modules out instead (the tests, under the ``dev`` extra).
    """
    root = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.iter_modules(root.__path__):
        if info.name.startswith("_"):
            continue
        name = f"{PACKAGE}.{info.name}"
        module = _import(name, skip_missing)
        if module is not None:
            names.append(name)
            names.extend(_public_children(module, skip_missing))
    return [names[0], *sorted(names[1:])]


def homes(modules: list[str]) -> dict[str, str]:
    """``module.name`` of every exported object -> the full name of its documented entry."""
    exported = {m: _exports(importlib.import_module(m)) for m in modules}
    result: dict[str, str] = {}
    for module, names in exported.items():
        for name in names:
            obj = getattr(importlib.import_module(module), name)
            defined = getattr(obj, "__module__", None) if not inspect.ismodule(obj) else None
            candidates = [
                m
                for m in modules
                if m != PACKAGE
                and name in exported[m]
                and isinstance(defined, str)
                and (defined == m or defined.startswith(m + "."))
                and getattr(importlib.import_module(m), name) is obj
            ]
            home = min(candidates, key=len) if candidates else module
            result[f"{module}.{name}"] = f"{home}.{name}"
    return result


def _kind(obj: object) -> str:
    """The autodoc directive for an exported object (modules are linked, not documented)."""
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


ROLES = {"function": "func", "class": "class", "exception": "exc", "data": "data"}


def _bare_signature(obj: object) -> str:
    """``(a, b=1, *, c=None)``: the call signature without annotations, for a pointer entry."""
    try:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"
    empty = inspect.Parameter.empty
    params = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=params, return_annotation=empty))


def _entry(module: str, name: str, obj: object, home: str) -> list[str]:
    """The directive of one exported name: autodoc in its home, a pointer elsewhere."""
    kind = _kind(obj)
    if kind == "module":
        return []
    if home != f"{module}.{name}":
        # A pointer, not a second copy: autodoc would register the class's canonical name twice.
        signature = _bare_signature(obj) if kind == "function" else ""
        return [
            f".. py:{kind}:: {name}{signature}",
            "   :no-index-entry:",
            "",
            f"   Re-exported; documented as :{ROLES[kind]}:`{home}`.",
            "",
        ]
    lines = [f".. auto{kind}:: {name}"]
    if kind == "data":
        lines.append("   :no-value:")
    elif kind in ("class", "exception"):
        lines.append("   :members:")
        foreign = _foreign_bases(obj)  # type: ignore[arg-type]
        if foreign:  # smoothlab's own mixins (IVON.predict) in, torch's and Python's out
            lines.append(f"   :inherited-members: {', '.join(foreign)}")
    return [*lines, ""]


def _foreign_bases(cls: type) -> list[str]:
    """Names of the bases of ``cls`` defined outside smoothlab, whose members are not ours."""
    own = PACKAGE + "."
    return sorted({b.__name__ for b in cls.__mro__[1:] if not b.__module__.startswith(own)})


def module_page(module: str, home_of: dict[str, str]) -> str:
    """The reST of one module's page: its docstring, a summary table, then each name."""
    mod = importlib.import_module(module)
    names = _exports(mod)
    title = module  # plain text: the sidebar wraps it at dots, not inside a code span
    lines = [title, "=" * len(title), "", f".. automodule:: {module}", "   :no-members:"]
    parent, _, leaf = module.rpartition(".")
    if parent and getattr(importlib.import_module(parent), leaf, mod) is not mod:
        # A module named like a function its package exports (losses.cross_entropy): the
        # function keeps the cross-reference target, the page stays reachable from the index.
        lines.append("   :no-index:")
    lines.append("")
    lines += [f".. currentmodule:: {module}", ""]
    submodules = [n for n in names if inspect.ismodule(getattr(mod, n))]
    if submodules:
        lines += ["Submodules: " + ", ".join(f":mod:`{module}.{n}`" for n in submodules), ""]
    documented = [n for n in names if n not in submodules]
    if documented:
        lines += [".. autosummary::", "", *(f"   {n}" for n in documented), ""]
    for name in documented:
        lines += _entry(module, name, getattr(mod, name), home_of[f"{module}.{name}"])
    if not names:
        lines += ["This module exports no names of its own; see its submodules.", ""]
    return "\n".join(lines)


def index_page(modules: list[str]) -> str:
    """The API index: one toctree entry per module page, with the module's one-line summary."""
    lines = ["API reference", "=============", ""]
    lines += [
        "Generated from each public module's ``__all__`` at every build. A name exported by",
        "several modules is documented in full in its home module; the others link to it.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    lines += [f"   {m}" for m in modules]
    lines += ["   cli", "   config", ""]
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    """Rewrite only changed pages, so Sphinx's incremental build rereads only those."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_api(outdir: Path) -> dict[str, str]:
    """Write ``index.rst`` and one page per public module into ``outdir``; return the homes."""
    outdir.mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    home_of = homes(modules)
    wanted = {f"{m}.rst" for m in modules} | {"index.rst", "cli.rst", "config.rst"}
    for stale in outdir.glob("*.rst"):
        if stale.name not in wanted:  # a module that was removed or renamed
            stale.unlink()
    write_if_changed(outdir / "index.rst", index_page(modules))
    for module in modules:
        write_if_changed(outdir / f"{module}.rst", module_page(module, home_of))
    return home_of
