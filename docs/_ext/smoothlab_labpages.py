"""Write the lab's reference pages from the code: the CLI's help and every config key.

The command line is read from the parser that the ``smoothlab`` console script builds (found
through the installed entry point, so it survives the CLI module moving), by stopping its
``parse_args`` before anything runs. Config keys come from the schema's frozen dataclasses
(``smoothlab.lab.Config`` and the dataclasses of its fields) and the methods registry
(``smoothlab.lab.METHODS``); a key's meaning is the comment written next to its field, or the
block of comment lines right above it, read with :mod:`tokenize`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import inspect
import io
import os
import textwrap
import tokenize
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

LAB = "smoothlab.lab"
SCRIPT = "smoothlab"
HELP_COLUMNS = "96"  # argparse wraps help at $COLUMNS; fixed so the page does not vary


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parser captured")
        self.parser = parser


def cli_main() -> Callable[..., Any]:
    """The ``main`` of the ``smoothlab`` console script's module, wherever the CLI module lives
    (the script itself, ``console``, ends the process after ``main``)."""
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name=SCRIPT)
    main: Callable[..., Any] = importlib.import_module(entry.module).main
    return main


def cli_parser() -> argparse.ArgumentParser:
    """The CLI's top-level parser, taken from the first ``parse_args`` call of ``main``."""
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign,assignment]
    try:
        cli_main()(["--help"])
    except _Captured as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise RuntimeError("the smoothlab CLI's main never called parse_args")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Subcommand name -> its parser, in the order the CLI defines them."""
    for action in parser._actions:  # argparse exposes subparsers only through its actions
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        return parser.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def _literal(text: str) -> list[str]:
    return [".. code-block:: text", "", *textwrap.indent(text, "   ").splitlines(), ""]


def cli_page() -> str:
    """The reST of the command-line page: ``smoothlab --help`` and each subcommand's."""
    parser = cli_parser()
    lines = ["Command line: ``smoothlab``", "============================", ""]
    lines += [
        "Generated at build time from the parser of the ``smoothlab`` console script. Each",
        "subcommand's section is its ``--help``. Configs are described in :doc:`config`.",
        "",
        *_literal(_help(parser)),
    ]
    for name, sub in subcommands(parser).items():
        title = f"``smoothlab {name}``"
        lines += [title, "-" * len(title), "", *_literal(_help(sub))]
    return "\n".join(lines)


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment: trailing on the field's lines, else the comment block above."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    result: dict[str, str] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        name = _field_name(line)
        if name is None:
            continue
        if number in comments:
            result[name] = comments[number]
            continue
        above = []
        row = number - 1
        while row in comments and row not in code_lines:
            above.insert(0, comments[row])
            row -= 1
        result[name] = " ".join(above)
    return result


def _field_name(line: str) -> str | None:
    """``name`` for a class-body line ``    name: type = ...`` (one indentation level)."""
    stripped = line.strip()
    if line[:4] != "    " or line[4:5].isspace() or ":" not in stripped:
        return None
    name = stripped.split(":", 1)[0]
    return name if name.isidentifier() else None


def meanings(cls: type) -> dict[str, str]:
    """Comments of ``cls``'s fields, looked up along the MRO (a subclass may change defaults)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            found.update({k: v for k, v in field_comments(klass).items() if v})
    return found


def toml_value(value: object) -> str:
    """A default written as it would be in a TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def type_name(tp: object) -> str:
    """A field type as a config writer reads it."""
    if typing.get_origin(tp) is tuple:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if isinstance(tp, type):
        return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
            tp, tp.__name__
        )
    return "table"


def _default(field: dataclasses.Field[Any]) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def schema_rows(cls: type) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for each plain (non-section) field of a schema dataclass."""
    hints = typing.get_type_hints(cls)
    notes = meanings(cls)
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        if dataclasses.is_dataclass(tp):
            continue
        yield field.name, type_name(tp), toml_value(_default(field)), notes.get(field.name, "")


def _escape(text: str) -> str:
    """Plain text inside reST: markup characters lose their meaning."""
    for char in "\\*`|_":
        text = text.replace(char, "\\" + char)
    return text


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 18 14 18 50", ""]
    lines += ["   * - key", "     - type", "     - default", "     - meaning"]
    for key, kind, default, meaning in rows:
        lines += [f"   * - ``{key}``", f"     - {kind}", f"     - ``{default}``"]
        lines += [f"     - {_escape(meaning) or '(no comment in the schema)'}"]
    return [*lines, ""]


def _section(title: str, cls: type) -> list[str]:
    doc = inspect.getdoc(cls) or ""
    lines = [title, "-" * len(title), ""]
    if doc:
        lines += [doc, ""]
    return lines + _table(list(schema_rows(cls)))


def config_classes() -> tuple[type, Mapping[str, type]]:
    """The schema's root dataclass and the methods registry, as the lab exports them."""
    lab = importlib.import_module(LAB)
    return lab.Config, lab.METHODS


def config_sections(root: type, prefix: str = "") -> Iterator[tuple[str, type]]:
    """(table name, dataclass) for the root and every nested section, in schema order."""
    yield (f"[{prefix}]" if prefix else "Top-level keys"), root
    hints = typing.get_type_hints(root)
    for field in dataclasses.fields(root):
        if dataclasses.is_dataclass(hints[field.name]):
            child = f"{prefix}.{field.name}" if prefix else field.name
            yield from config_sections(hints[field.name], child)


def config_page() -> str:
    """The reST of the config reference: every key, its type, default and meaning."""
    root, methods = config_classes()
    lines = ["Config reference", "================", ""]
    lines += [
        "Generated at build time from the lab's config schema (its frozen dataclasses and the",
        "comments next to their fields) and its methods registry. Every key is optional; an",
        "unknown key is an error naming the nearest valid one. ``smoothlab show-config FILE``",
        "prints a config with every default filled in; ``--set key=value`` overrides a key.",
        "",
    ]
    for title, cls in config_sections(root):
        lines += _section(title, cls)
    lines += ["Methods", "-------", ""]
    lines += [
        "Each ``[methods.NAME]`` table adds a method to the grid; its keys are the method's",
        "parameters, and a list of values is a sweep.",
        "",
    ]
    for name, cls in methods.items():
        title = f"[methods.{name}]"
        lines += [title, "~" * len(title), ""]
        lines += [inspect.getdoc(cls) or "", ""]
        rows = list(schema_rows(cls))
        lines += _table(rows) if rows else ["No parameters.", ""]
    return "\n".join(lines)
