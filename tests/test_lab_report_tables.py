"""The report page's summary table: the best of each noise setting in bold, and the means that
the seeds cannot tell from it underlined (Welch's t-test against a twin that integrates the
Student t density itself)."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest

from smoothlab.lab.report.summary import Cell, SummaryRow, best_cells
from smoothlab.lab.report.tables import TIE_LEVEL, metrics_table, tied_cells, welch_p


def _welch_p(a: Cell, b: Cell) -> float:
    """Two-sided Welch p-value: t and the Welch-Satterthwaite degrees of freedom by hand, and
    1 - 2 x the integral of the Student t density from 0 to |t| by Simpson's rule (float64)."""
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    t = abs(a.mean - b.mean) / math.sqrt(va + vb)
    nu = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    log_c = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    s = np.linspace(0.0, t, 400_001)
    density = np.exp(log_c - (nu + 1) / 2 * np.log1p(s * s / nu))
    h = s[1] - s[0]
    simpson = h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum()
                       + 2 * density[2:-1:2].sum())  # fmt: skip
    return float(1 - 2 * simpson)


def test_welch_p_values_equal_the_twin_and_scipys_test() -> None:
    from scipy import stats

    rng = random.Random(0)
    for _ in range(200):
        a = Cell(rng.uniform(0.5, 0.9), rng.uniform(0.0, 0.05), rng.randint(2, 10))
        b = Cell(rng.uniform(0.5, 0.9), rng.uniform(0.001, 0.05), rng.randint(2, 10))
        ours = welch_p(a, b)
        assert ours == pytest.approx(_welch_p(a, b), rel=1e-6, abs=1e-9)
        oracle = stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False)
        assert ours == pytest.approx(float(oracle.pvalue), rel=1e-9, abs=1e-12)
        assert welch_p(b, a) == ours  # symmetric


def _rows(cells: list[tuple[str, str, float, Cell]]) -> list[SummaryRow]:
    return [SummaryRow(m, m, kind, rate, c.n, {"accuracy": c}) for m, kind, rate, c in cells]


def test_ties_are_the_cells_whose_welch_p_against_the_best_is_at_least_the_level() -> None:
    rng = random.Random(1)
    for _ in range(50):
        cells = [(f"m{i}", "symmetric", rate, Cell(rng.uniform(0.7, 0.8), rng.uniform(0.0, 0.03),
                                                  rng.randint(1, 5)))
                 for rate in (0.2, 0.4) for i in range(6)]  # fmt: skip
        rows = _rows(cells)
        best = best_cells(rows)
        expected = set()
        for index, row in enumerate(rows):
            cell = row.cells["accuracy"]
            (top,) = [i for i, _ in best if rows[i].noise_rate == row.noise_rate][:1]
            other = rows[top].cells["accuracy"]
            if (index, "accuracy") in best or min(cell.n, other.n) < 2:
                continue
            if cell.std == other.std == 0:
                continue
            if _welch_p(other, cell) >= TIE_LEVEL:
                expected.add((index, "accuracy"))
        assert tied_cells(rows) == expected


def test_what_cannot_be_tested_is_never_marked() -> None:
    rows = _rows([
        ("best", "none", 0.0, Cell(0.9, 0.01, 3)),
        ("one-seed", "none", 0.0, Cell(0.899, 0.0, 1)),  # no spread: not tested
        ("close", "none", 0.0, Cell(0.899, 0.01, 3)),
        ("far", "none", 0.0, Cell(0.5, 0.01, 3)),
        ("blown-up", "none", 0.0, Cell(float("nan"), float("nan"), 3)),
        ("alone", "symmetric", 0.2, Cell(0.7, 0.01, 3)),  # its setting's only method: bold only
    ])  # fmt: skip
    assert tied_cells(rows) == {(2, "accuracy")}
    flat = _rows([("a", "none", 0.0, Cell(0.9, 0.0, 3)), ("b", "none", 0.0, Cell(0.8, 0.0, 3))])
    assert tied_cells(flat) == set()  # no spread in either: no test, and 0.8 is not 0.9


def test_the_page_table_bolds_the_best_and_underlines_the_ties() -> None:
    rows = _rows([
        ("ce", "symmetric", 0.2, Cell(0.80, 0.01, 5)),
        ("ls", "symmetric", 0.2, Cell(0.81, 0.02, 5)),
        ("nls", "symmetric", 0.2, Cell(0.90, 0.01, 5)),
        ("nls2", "symmetric", 0.2, Cell(0.895, 0.01, 5)),
    ])  # fmt: skip
    table = metrics_table(rows)
    marked = dict(re.findall(r"<tr><td>([^<]+)</td>(?:<td>[^<]*</td>){3}<td>(<[bu]>)?", table))
    assert marked == {"ce": "", "ls": "", "nls": "<b>", "nls2": "<u>"}
