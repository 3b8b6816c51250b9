"""The README shows what the code prints: its demo table is the output of ``smoothlab demo``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?(e[-+]?\d+)?$")
# A mean or spread printed with 3 decimals may move by about one test example (1/360 of
# accuracy, a mean over 2 seeds) where another CPU's matrix products round differently; a
# table produced by different code (another kernel backend, other hyperparameters) moves by
# more. Measured: the IVON rows of the PyTorch path differ from the native ones by 0.005 in
# accuracy and ECE and 0.026 in NLL.
TOLERANCE = 0.003


def _rows(text: str) -> list[list[str]]:
    """The rows of the table (between its header and its footnote) as tokens, ``±`` dropped."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["method"])
    stop = next(i for i, line in enumerate(lines) if line.startswith("mean ± std"))
    rows = [[t for t in line.split() if t != "±"] for line in lines[start + 1 : stop]]
    return [row for row in rows if any(NUMBER.match(t) for t in row)]


def _readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("It prints the table below")
    block = text[text.index("```\n", start) + 4 :]
    return block[: block.index("```")]


def _same(a: list[str], b: list[str]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if NUMBER.match(x) and NUMBER.match(y):
            if abs(float(x) - float(y)) > TOLERANCE:
                return False
        elif x != y:
            return False
    return True


def test_rows_compare_by_label_and_number() -> None:
    a = [["ce", "none", "0", "2", "0.974", "0.004"]]
    table = "[ 1/36] ce 0.9\n  method  noise\n ───\n  ce   none   0   2   0.974 ± 0.004\n\nmean ± std\n1 s"
    assert _rows(table) == a
    assert _same(a[0], ["ce", "none", "0", "2", "0.976", "0.002"])
    assert not _same(a[0], ["ce", "none", "0", "2", "0.979", "0.004"])
    assert not _same(a[0], ["ls", "none", "0", "2", "0.974", "0.004"])


@pytest.mark.slow
def test_readme_demo_table_is_what_smoothlab_demo_prints(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smoothlab.lab", "demo", "--out", str(tmp_path / "demo"),
         "--no-report", "--workers", "1"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed, shown = _rows(done.stdout), _rows(_readme_table())
    assert len(shown) == len(printed) == 18
    for ours, theirs in zip(shown, printed, strict=True):
        assert _same(ours, theirs), f"README row {ours} but `smoothlab demo` printed {theirs}"
