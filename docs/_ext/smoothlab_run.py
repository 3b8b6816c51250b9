"""``.. run-python::`` and ``.. run-shell::``: guide code that is executed when the site builds.

Each block is shown as code followed by what it printed, so a guide's numbers are the ones the
current code produces. The Python blocks of one page share a namespace (a page reads as one
script); shell blocks run each ``$ command`` line with the build's Python environment first on
``PATH``, in one temporary working folder per page. A block that raises, or a command that exits
non-zero, is a build error, which ``-W`` turns into a failed build.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, ClassVar

import torch
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

SHELL_TIMEOUT_S = 120  # one tiny lab run takes seconds; a hang must not stall the build


class _PageState:
    """Per-page namespace and working folder; pages are read one at a time in one process."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__guide__"}
        self.folder = Path(tempfile.mkdtemp(prefix="smoothlab-guide-"))


_PAGES: dict[str, _PageState] = {}


def _state(docname: str) -> _PageState:
    return _PAGES.setdefault(docname, _PageState())


def _reset(app: Sphinx, docname: str, source: list[str]) -> None:
    _PAGES.pop(docname, None)  # a page read again starts from a clean namespace


class _RunBlock(SphinxDirective):
    has_content = True
    language: ClassVar[str] = "python"

    def execute(self, code: str) -> str:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content)
        try:
            output = self.execute(code)
        except _Failed as failure:
            raise self.error(f"guide code failed in {self.env.docname}:\n{failure}") from None
        shown = [nodes.literal_block(code, code, language=self.language)]
        if output.strip():
            block = nodes.literal_block(output, output, language="text")
            block["classes"].append("guide-output")
            shown.append(block)
        return shown


class _Failed(Exception):
    pass


class RunPython(_RunBlock):
    """Execute the block in the page's namespace; show the code and its standard output."""

    def execute(self, code: str) -> str:
        state = _state(self.env.docname)
        out = io.StringIO()
        previous = os.getcwd()
        try:
            os.chdir(state.folder)
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"<{self.env.docname}>", "exec"), state.namespace)
        except Exception:
            raise _Failed(traceback.format_exc(limit=-4)) from None
        finally:
            os.chdir(previous)
        return out.getvalue()


class RunShell(_RunBlock):
    """Run each ``$ command`` line with bash; show commands and output like a terminal."""

    language = "console"

    def execute(self, code: str) -> str:
        state = _state(self.env.docname)
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["COLUMNS"] = "100"
        transcript = []
        for line in code.splitlines():
            if not line.startswith("$ "):
                continue
            done = subprocess.run(
                ["bash", "-c", line[2:]],
                cwd=state.folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=SHELL_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0:
                raise _Failed(f"{line}\nexit {done.returncode}\n{done.stdout}{done.stderr}")
            transcript.append(done.stdout)
        return "".join(transcript)


def setup(app: Sphinx) -> dict[str, Any]:
    # The guides' tensors are tiny: a second intra-op thread only adds synchronisation, which
    # costs many times the work itself on a busy machine. Their lab commands get one as well.
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    app.add_directive("run-python", RunPython)
    app.add_directive("run-shell", RunShell)
    app.connect("source-read", _reset)
    # Executed pages keep state in this process: read them serially.
    return {"parallel_read_safe": False, "parallel_write_safe": True}
