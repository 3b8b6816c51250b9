"""The lab's ``[calibration]`` table: checked keys, run keys unchanged without it, every
calibrator fitted after training (alone and stacked) and reported as methods x calibrators."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")
pytest.importorskip("matplotlib")

from smoothlab import calibration as posthoc
from smoothlab.lab.plan.calibrators import CALIBRATORS, build_calibrator, calibrator
from smoothlab.lab.plan.grid import (
    RunConfig,
    canonical_json,
    config_experiment_id,
    expand_grid,
    experiment_id,
    run_key,
    run_seeds,
)
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.schema import CalibrationConfig, ConfigError, config_to_dict
from smoothlab.lab.report.calibration import calibration_section, calibration_table
from smoothlab.lab.report.summary import Cell, SummaryRow
from smoothlab.lab.train.evaluation import score_logits
from smoothlab.lab.train.loop import ProgressFn, RunResult, RunTask, execute
from smoothlab.lab.train.stacked import execute_stacked, stack_key
from smoothlab.metrics import (
    accuracy,
    aurc,
    brier_score,
    classwise_calibration_error,
    expected_calibration_error,
    smooth_calibration_error,
)

ALL = [row.name for row in CALIBRATORS]
BASE_METRICS = {"accuracy", "nll", "ece", "brier", "smooth_ece", "classwise_ece", "aurc"}
TINY: dict[str, Any] = {
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 150, "val_fraction": 0.3},
    "model": {"hidden": [16]},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.1},
    "noise": {"rates": [0.2]},
    "seeds": 1,
    "methods": {"ce": {}, "ls": {"smoothing": 0.1}},
}


# --- the config table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"calibration": {"methods": []}},
            "`calibration.methods` must be a non-empty list of calibrators "
            "(train.temperature_scaling = false turns calibration off), got []",
        ),
        (
            {"calibration": {"methods": ["isotonik"]}},
            "unknown calibrator `isotonik` in calibration.methods; did you mean `isotonic`? "
            "(valid: dirichlet, histogram, isotonic, matrix, temperature, vector)",
        ),
        (
            {"calibration": {"methods": ["vector", "vector"]}},
            "`calibration.methods` must name each calibrator once, got ['vector', 'vector']",
        ),
        (
            {"calibration": {"methods": ["matrix"], "off_diagonal": -0.5}},
            "`calibration.off_diagonal` must be >= 0, got -0.5",
        ),
        (
            {"calibration": {"methods": ["dirichlet"], "intercept": -1}},
            "`calibration.intercept` must be >= 0, got -1.0",
        ),
        (
            {"calibration": {"methods": ["histogram"], "bins": 0}},
            "`calibration.bins` must be >= 1, got 0",
        ),
        (
            {"calibration": {"bins": 20}},
            "`calibration.bins` must be left out unless calibration.methods has histogram "
            "(no other calibrator reads it), got 20",
        ),
        (
            {"calibration": {"methods": ["isotonic"], "off_diagonal": 0.1}},
            "`calibration.off_diagonal` must be left out unless calibration.methods has matrix, "
            "dirichlet (no other calibrator reads it), got 0.1",
        ),
        (
            {"calibration": {"methods": ["isotonic"]}, "train": {"temperature_scaling": False}},
            "`train.temperature_scaling` must be true with a [calibration] table "
            "(false turns every calibrator off), got false",
        ),
        (
            {"calibration": {"methods": ["isotonic"]}, "data": {"val_fraction": 0}},
            "`data.val_fraction` must be > 0 with a [calibration] table (the calibrators are "
            "fitted on the validation split), got 0.0",
        ),
        (
            {"calibration": {"method": ["isotonic"]}},
            "unknown key `calibration.method`; did you mean `methods`? "
            "(valid: bins, intercept, methods, off_diagonal)",
        ),
        (
            {"calibration": {"methods": [1]}},
            "`calibration.methods` must be a string, got 1",
        ),
    ],
)
def test_bad_calibration_tables_say_what_they_expected(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert str(caught.value) == message


def test_a_good_table_loads_with_its_options() -> None:
    raw = {"calibration": {"methods": ["histogram", "matrix"], "bins": 10, "intercept": 0.1}}
    calibration = config_from_dict(raw).calibration
    assert calibration == CalibrationConfig(("histogram", "matrix"), 0.01, 0.1, 10)
    assert config_to_dict(config_from_dict(raw))["calibration"]["bins"] == 10


def _key_before_the_table(run: RunConfig) -> str:
    """The run key as computed before ``[calibration]`` existed: every other field, hashed."""
    raw = dataclasses.asdict(run)
    del raw["calibration"]
    raw["params"] = dict(run.params)
    return hashlib.sha256(canonical_json(json.loads(json.dumps(raw))).encode()).hexdigest()


def test_an_absent_table_keeps_run_keys_and_experiments() -> None:
    absent = expand_grid(config_from_dict(TINY))
    written = expand_grid(config_from_dict({**TINY, "calibration": {"methods": ["temperature"]}}))
    assert [run_key(r) for r in absent] == [_key_before_the_table(r) for r in absent]
    assert [run_key(r) for r in written] == [run_key(r) for r in absent]
    assert "calibration" not in absent[0].to_dict()
    ident = experiment_id(absent[0].to_dict())
    assert ident == config_experiment_id(config_to_dict(config_from_dict(TINY)))
    parts = {k: absent[0].to_dict()[k] for k in ("data", "model", "train", "exact_noise")}
    assert ident == hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def test_another_table_makes_new_runs_of_a_new_experiment() -> None:
    config = config_from_dict({**TINY, "calibration": {"methods": ["isotonic"]}})
    runs = expand_grid(config)
    before = expand_grid(config_from_dict(TINY))
    assert {run_key(r) for r in runs}.isdisjoint(run_key(r) for r in before)
    assert runs[0].to_dict()["calibration"]["methods"] == ["isotonic"]
    ident = experiment_id(runs[0].to_dict())
    assert ident != experiment_id(before[0].to_dict())
    assert ident == config_experiment_id(config_to_dict(config))  # the stored config's id


# --- fitting and measuring ----------------------------------------------------------------------


def _direct(name: str, k: int) -> Any:
    """Each calibrator built here from smoothlab.calibration, not through the registry."""
    return {
        "temperature": lambda: posthoc.TemperatureScaling(),
        "vector": lambda: posthoc.VectorScaling(k),
        "matrix": lambda: posthoc.MatrixScaling(k, off_diagonal=0.01, intercept=0.01),
        "dirichlet": lambda: posthoc.DirichletCalibration(k, off_diagonal=0.01, intercept=0.01),
        "histogram": lambda: posthoc.HistogramBinning(k, n_bins=15),
        "isotonic": lambda: posthoc.IsotonicCalibration(k),
    }[name]()


@pytest.mark.parametrize("name", ALL)
def test_each_calibrator_is_fitted_on_validation_and_measured_on_test(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    truth = 2 * torch.randn(1000, 4, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(truth, 1), 1, generator=g).squeeze(1)
    z = 3 * truth  # labels drawn from softmax(truth): the logits are 3 times too sharp
    val, test = (z[:500], y[:500]), (z[500:], y[500:])
    metrics, extras = score_logits(*test, *val, CalibrationConfig(methods=(name,)))
    suffix = calibrator(name).suffix
    assert {m for m in metrics if m.endswith(suffix)} == {m + suffix for m in BASE_METRICS}
    assert sorted(extras) == ["reliability", "reliability" + suffix]
    with torch.no_grad():
        out = _direct(name, 4).fit(*val)(test[0]).double()
    probs = torch.softmax(out, 1)
    expected = {
        "accuracy": accuracy(probs, test[1]),
        "nll": F.cross_entropy(out, test[1]),
        "ece": expected_calibration_error(probs, test[1]),
        "brier": brier_score(probs, test[1]),
        "smooth_ece": smooth_calibration_error(probs, test[1]),
        "classwise_ece": classwise_calibration_error(probs, test[1]),
        "aurc": aurc(probs, test[1]),
    }
    for metric, value in expected.items():
        assert metrics[metric + suffix] == pytest.approx(float(value), rel=1e-9), metric
    assert metrics["ece" + suffix] < metrics["ece"] / 2  # every calibrator undoes much of it
    assert ("temperature" in metrics) == (name == "temperature")


def test_no_validation_split_means_no_calibrated_metrics() -> None:
    z, y = torch.randn(30, 3, dtype=torch.float64), torch.arange(30) % 3
    metrics, extras = score_logits(z, y, z[:0], y[:0], CalibrationConfig(methods=tuple(ALL)))
    assert set(metrics) == BASE_METRICS and list(extras) == ["reliability"]


def test_the_registry_passes_the_options_on() -> None:
    config = CalibrationConfig(("matrix", "histogram"), 0.5, 0.25, 7)
    matrix = build_calibrator("matrix", 3, config)
    assert (matrix.off_diagonal, matrix.intercept) == (0.5, 0.25)  # type: ignore[attr-defined]
    assert build_calibrator("histogram", 3, config).n_bins == 7  # type: ignore[attr-defined]


# --- through the lab: alone, stacked, stored and reported ---------------------------------------


def _tasks() -> list[RunTask]:
    runs = expand_grid(config_from_dict({**TINY, "calibration": {"methods": ALL}}))
    return [RunTask(run_key(r), r, *run_seeds(r)) for r in runs]


class _StackedInProcess:
    """The stacked executor's work without its process pool."""

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        yield from execute_stacked(list(tasks), progress)

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture(scope="module")
def lab_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from smoothlab.lab.run.runner import run_experiment

    folder = tmp_path_factory.mktemp("calibration")
    config = config_from_dict({**TINY, "name": "cal", "calibration": {"methods": ALL}})
    summary = run_experiment(config, folder, _StackedInProcess())
    assert summary.finished == 2 and not summary.failed
    return folder


def test_every_calibrator_runs_alone_and_stacked_alike(lab_folder: Path) -> None:
    from smoothlab.lab.run.store import ResultsStore

    tasks = _tasks()
    assert len({stack_key(t) for t in tasks}) == 1  # both runs stacked in the fixture
    store = ResultsStore(lab_folder, readonly=True)
    stored = {row.key: row for row in store.runs()}
    store.close()
    alone = execute(tasks[0])
    assert alone.error == ""
    for row in CALIBRATORS:
        for metric in BASE_METRICS:
            value = alone.metrics[metric + row.suffix]
            assert math.isfinite(value), metric + row.suffix
            stacked = stored[tasks[0].key].metrics[metric + row.suffix]
            assert stacked == pytest.approx(value, rel=1e-3, abs=1e-3), metric + row.suffix


def test_the_report_has_a_table_per_metric_and_the_csv_columns(lab_folder: Path) -> None:
    from smoothlab.lab.report.html import write_report

    page = write_report(lab_folder).read_text()
    assert "<h2>Post-hoc calibration (test set, mean ± std over seeds)</h2>" in page
    titles = [row.title for row in CALIBRATORS]
    assert "<th>none</th>" + "".join(f"<th>{t}</th>" for t in titles) in page
    for title in ("ECE (15 equal-width bins)", "Smooth ECE", "Classwise ECE", "NLL", "AURC"):
        assert f"<h3>{title}" in page
    with (lab_folder / "report" / "summary.csv").open() as handle:
        header = next(csv.reader(handle))
    for row in CALIBRATORS:
        assert {f"ece{row.suffix}_mean", f"aurc{row.suffix}_std"} <= set(header)
    assert {"smooth_ece_mean", "classwise_ece_mean", "aurc_mean"} <= set(header)


# --- the report's tables ------------------------------------------------------------------------


def _summary(**cells: Cell) -> list[SummaryRow]:
    return [SummaryRow("ce", "ce", "symmetric", 0.2, 2, dict(cells))]


def test_a_table_line_bolds_the_best_calibrator_and_marks_missing_ones() -> None:
    rows = _summary(ece=Cell(0.2, 0.01), ece_ts=Cell(0.05, 0.01), ece_iso=Cell(0.07, 0.02))
    table = calibration_table(rows, "ece", "min", [calibrator("temperature"),
                              calibrator("vector"), calibrator("isotonic")])  # fmt: skip
    cells = table.split("</tr>")[1].split("<td>")[1:]
    texts = [c.removesuffix("</td>") for c in cells]
    assert texts == ["ce", "symmetric", "0.2", "2", "0.200 ± 0.010", "<b>0.050 ± 0.010</b>", "-",
                     "0.070 ± 0.020"]  # fmt: skip
    best_accuracy = calibration_table(
        _summary(accuracy=Cell(0.8, 0), accuracy_iso=Cell(0.9, 0)),
        "accuracy",
        "max",
        [calibrator("isotonic")],
    )
    assert "<td><b>0.900 ± 0.000</b></td>" in best_accuracy  # the largest, for accuracy


def test_the_section_shows_what_the_main_table_lacks() -> None:
    old = _summary(ece=Cell(0.2, 0.01), ece_ts=Cell(0.05, 0.01))
    assert calibration_section(old) == ""  # runs stored before the new metrics
    default = _summary(ece=Cell(0.2, 0), ece_ts=Cell(0.1, 0), aurc=Cell(0.1, 0), aurc_ts=Cell(0, 0))
    section = calibration_section(default)
    assert section.count("<h3>") == 1 and "<h3>AURC" in section  # ECE is in the main table
    configured = _summary(ece=Cell(0.2, 0), ece_dir=Cell(0.1, 0), nll=Cell(1, 0))
    section = calibration_section(configured)
    assert section.count("<h3>") == 2 and "Dir-ODIR = dirichlet (Kull et al." in section


def test_a_folder_with_and_without_the_table_reports_two_experiments(tmp_path: Path) -> None:
    from smoothlab.lab.report.html import write_report
    from smoothlab.lab.run.store import ResultsStore, RunRow

    store = ResultsStore(tmp_path)
    for table in ({}, {"calibration": {"methods": ["isotonic"]}}):
        run = expand_grid(config_from_dict({**TINY, **table}))[0]
        metrics = {"accuracy": 0.9, "ece": 0.1, "ece_iso": 0.05, "smooth_ece": 0.1}
        config = run.to_dict()
        row = RunRow(run_key(run), "cal", "ce", "ce", run.noise_kind, run.noise_rate, 0, config,
                     metrics, {}, {}, 1.0, experiment_id(config))  # fmt: skip
        store.add_run(row, b"")
    store.close()
    index = write_report(tmp_path).read_text()
    assert "calibration.methods = [temperature]" in index
    assert "calibration.methods = [isotonic]" in index
