"""Provenance of a run of the grid: what produced the numbers, recorded when they were produced.

The report shows it at the top of its page, so a figure pasted into a paper can be traced back:
smoothlab's version and git commit (when run from a checkout), torch's version, which kernel
backend computed the losses (native C or PyTorch; :func:`smoothlab._native.status`), the device,
the date, the wall time and the command. It is collected by the driver at the start of
:func:`~smoothlab.lab.run.runner.run_experiment` and stored with the experiment, not guessed at
report time on another machine.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["collect_provenance", "git_commit"]


def git_commit(folder: Path | None = None) -> str:
    """The commit of the git checkout holding ``folder`` (smoothlab's source by default), with
    ``+dirty`` when it has uncommitted changes; "" when it is not a checkout or git is missing.

    >>> git_commit(Path("/"))
    ''
    """
    where = folder or Path(__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=5
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = commit and git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return f"{commit}+dirty" if dirty else commit


def _backend() -> str:
    from smoothlab import _native

    native = _native.library_status("losses")  # not status(): it imports Triton
    return "native C kernels" if native.startswith("loaded") else f"PyTorch ({native})"


def collect_provenance(device: str, argv: list[str] | None = None) -> dict[str, Any]:
    """The provenance of a run started now on ``device``, by the command ``argv``.

    >>> info = collect_provenance("cpu", ["smoothlab", "demo"])
    >>> sorted(info)
    ['backend', 'command', 'commit', 'date', 'device', 'smoothlab', 'torch']
    >>> info["command"], info["device"]
    ('smoothlab demo', 'cpu')
    """
    import torch

    argv = list(sys.argv) if argv is None else argv
    if argv and Path(argv[0]).name in ("smoothlab", "__main__.py"):
        argv = ["smoothlab", *argv[1:]]  # the console script, however it was started
    try:
        version = importlib.metadata.version("smoothlab")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "smoothlab": version,
        "commit": git_commit(),
        "torch": torch.__version__,
        "backend": _backend(),
        "device": device,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(argv),
    }
