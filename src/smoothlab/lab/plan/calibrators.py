"""The registry of post-hoc calibrators a config's ``[calibration] methods`` can name.

Each row names a :mod:`smoothlab.calibration` module, the metric suffix its test-set numbers are
stored under (``ece`` + ``_iso`` = ``ece_iso``), the short title the report's columns use, and
the ``[calibration]`` options it reads (an option set for no configured calibrator is an error,
:mod:`smoothlab.lab.plan.validate`). Temperature scaling keeps the ``_ts`` suffix that every
stored run already has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self

from torch import Tensor

from smoothlab.lab.plan.schema import CalibrationConfig, ConfigError, suggest

__all__ = ["CALIBRATORS", "Calibrator", "PostHoc", "build_calibrator", "calibrator"]


class PostHoc(Protocol):
    """What every :mod:`smoothlab.calibration` module offers: ``fit`` on held-out logits, then
    calibrated logits (or log-probabilities) from a call."""

    def fit(self, logits: Tensor, target: Tensor) -> Self: ...

    def __call__(self, logits: Tensor) -> Tensor: ...


def _temperature(num_classes: int, config: CalibrationConfig) -> PostHoc:
    from smoothlab.calibration import TemperatureScaling

    return TemperatureScaling()


def _vector(num_classes: int, config: CalibrationConfig) -> PostHoc:
    from smoothlab.calibration import VectorScaling

    return VectorScaling(num_classes)


def _matrix(num_classes: int, config: CalibrationConfig) -> PostHoc:
    from smoothlab.calibration import MatrixScaling

    return MatrixScaling(num_classes, off_diagonal=config.off_diagonal, intercept=config.intercept)


def _dirichlet(num_classes: int, config: CalibrationConfig) -> PostHoc:
    from smoothlab.calibration import DirichletCalibration

    return DirichletCalibration(
        num_classes, off_diagonal=config.off_diagonal, intercept=config.intercept
    )


def _histogram(num_classes: int, config: CalibrationConfig) -> PostHoc:
    from smoothlab.calibration import HistogramBinning

    return HistogramBinning(num_classes, n_bins=config.bins)


def _isotonic(num_classes: int, config: CalibrationConfig) -> PostHoc:
    from smoothlab.calibration import IsotonicCalibration

    return IsotonicCalibration(num_classes)


@dataclass(frozen=True)
class Calibrator:
    """One post-hoc calibrator of the lab."""

    name: str  # what [calibration] methods names
    suffix: str  # appended to every test metric it gives: ece_ts, nll_iso, ...
    title: str  # the report's column heading
    options: tuple[str, ...]  # the [calibration] keys it reads
    make: Callable[[int, CalibrationConfig], PostHoc]  # (number of classes, config) -> module
    paper: str


_ODIR = ("off_diagonal", "intercept")
_KULL = "Kull et al., NeurIPS 2019"
CALIBRATORS: tuple[Calibrator, ...] = (
    Calibrator("temperature", "_ts", "TS", (), _temperature, "Guo et al., ICML 2017"),
    Calibrator("vector", "_vs", "VS", (), _vector, "Guo et al., ICML 2017"),
    Calibrator("matrix", "_ms", "MS-ODIR", _ODIR, _matrix, _KULL),
    Calibrator("dirichlet", "_dir", "Dir-ODIR", _ODIR, _dirichlet, _KULL),
    Calibrator(
        "histogram", "_hist", "histogram", ("bins",), _histogram, "Zadrozny & Elkan, ICML 2001"
    ),
    Calibrator("isotonic", "_iso", "isotonic", (), _isotonic, "Zadrozny & Elkan, KDD 2002"),
)


def calibrator(name: str) -> Calibrator:
    """The registry row called ``name``; an unknown name lists the valid ones.

    >>> calibrator("isotonic").suffix
    '_iso'
    >>> calibrator("isotonik")
    Traceback (most recent call last):
    ...
    smoothlab.lab.plan.schema.ConfigError: unknown calibrator `isotonik` in calibration.methods; \
did you mean `isotonic`? (valid: dirichlet, histogram, isotonic, matrix, temperature, vector)
    """
    for row in CALIBRATORS:
        if row.name == name:
            return row
    valid = [row.name for row in CALIBRATORS]
    raise ConfigError(f"unknown calibrator `{name}` in calibration.methods{suggest(name, valid)}")


def build_calibrator(name: str, num_classes: int, config: CalibrationConfig) -> PostHoc:
    """An unfitted calibrator for ``num_classes`` classes with ``config``'s options.

    >>> build_calibrator("histogram", 3, CalibrationConfig(bins=4)).n_bins
    4
    """
    return calibrator(name).make(num_classes, config)
