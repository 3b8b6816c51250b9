"""A smoothing-rate x noise-rate table (Markdown) from a lab report's ``summary.csv``.

Run: ``.venv/bin/python docs/reproductions/rate_table.py results/NAME/report/summary.csv
[--metric accuracy]``. Rows are the smoothing rates (ls and nls; ce is r = 0), from positive to
negative as in Wei et al.'s Table 1; columns the symmetric noise rates (the clean runs at 0);
cells mean ± std over seeds, the best mean of each column in bold (the lowest for NLL, ECE and
Brier).
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path


def rate_of(label: str) -> float:
    """The smoothing rate of a row label: ``ce`` is 0, ``ls(smoothing=0.2)`` 0.2."""
    found = re.search(r"smoothing=(-?[0-9.]+)", label)
    return float(found.group(1)) if found else 0.0


def table(path: Path, metric: str) -> str:
    cells: dict[tuple[float, float], tuple[float, float]] = {}
    for row in csv.DictReader(path.open()):
        if row["method"] in ("ce", "ls", "nls"):
            noise = float(row["noise_rate"])
            cells[(rate_of(row["label"]), noise)] = (
                float(row[f"{metric}_mean"]),
                float(row[f"{metric}_std"] or 0.0),
            )
    rates = sorted({r for r, _ in cells}, reverse=True)
    noises = sorted({n for _, n in cells})
    pick = min if metric.startswith(("nll", "ece", "brier")) else max  # lower is better there
    best = {n: pick(cells[(r, n)][0] for r in rates if (r, n) in cells) for n in noises}
    lines = [
        "| r \\ noise | " + " | ".join(f"{n:g}" for n in noises) + " |",
        "|---:|" + "---:|" * len(noises),
    ]
    for r in rates:
        parts = []
        for n in noises:
            mean, std = cells.get((r, n), (float("nan"), 0.0))
            text = f"{mean:.3f} ± {std:.3f}"
            parts.append(f"**{text}**" if mean == best[n] else text)
        lines.append(f"| {r:g} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", type=Path)
    parser.add_argument("--metric", default="accuracy")
    args = parser.parse_args()
    print(table(args.summary, args.metric))


if __name__ == "__main__":
    main()
