r"""Non-parametric one-vs-rest calibration: histogram binning and isotonic regression (L2).

Both map each class's probability :math:`p_{ik} = \mathrm{softmax}(z_i)_k` through its own
monotone step or piecewise-linear function :math:`g_k`, fitted on held-out data to the indicator
:math:`[y_i = k]`, and renormalise the row (Zadrozny & Elkan's one-vs-rest reduction):

.. math::
    q_{ik} = \frac{g_k(p_{ik})}{\sum_j g_j(p_{ij})}, \qquad
    \mathrm{forward}(z)_{ik} = \log \max(q_{ik}, \epsilon_{\mathrm{tiny}})

``forward`` returns log-probabilities so that, like the scaling methods, its output is a logit
whose softmax is the calibrated distribution; a calibrated probability of 0 becomes the log of the
smallest normal number of the logits' dtype (finite, and 0 again after softmax). A row whose
:math:`g_j` are all 0 gets the uniform distribution. Unlike the scaling methods these maps are
piecewise constant or linear, so they can tie classes that were ordered, and they are not
differentiable in a useful way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor, nn

from smoothlab._checks import check_floating, check_int
from smoothlab.calibration._inputs import check_classes, check_fit_inputs
from smoothlab.metrics._binning import Binning, bin_sums, check_binning

__all__ = ["HistogramBinning", "IsotonicCalibration"]


class _OneVsRest(nn.Module, ABC):
    """Shared ``fit`` / ``forward``; subclasses fit and apply the per-class maps."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, low=2)

    @abstractmethod
    def _fit_maps(self, probs: Tensor, outcome: Tensor) -> None:
        """Fit the maps to ``(C, N)`` probabilities and ``(C, N)`` one-vs-rest outcomes."""

    @abstractmethod
    def _map(self, probs: Tensor) -> Tensor:
        """Apply the maps to ``(C, M)`` probabilities, row ``k`` through class ``k``'s map."""

    def fit(self, logits: Tensor, target: Tensor) -> Self:
        """Fit every class's map to ``[target = k]`` on ``softmax(logits)``; return self."""
        z, y = check_fit_inputs(logits, target)
        check_classes(z, self.num_classes)
        classes = torch.arange(self.num_classes, device=z.device).unsqueeze(1)
        self._fit_maps(torch.softmax(z, 1).T.contiguous(), (y == classes).to(torch.float64))
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """Calibrated log-probabilities along dimension 1, in the logits' dtype and device."""
        z = check_floating("logits", logits, min_dim=2)
        check_classes(z, self.num_classes)
        moved = torch.movedim(z.detach(), 1, -1)
        probs = torch.softmax(moved.reshape(-1, self.num_classes).to(torch.float64), 1)
        mapped = self._map(probs.T.contiguous()).T
        total = mapped.sum(1, keepdim=True)
        uniform = torch.full_like(mapped, 1 / self.num_classes)
        calibrated = torch.where(total > 0, mapped / total.clamp(min=1e-300), uniform)
        floor = torch.finfo(z.dtype).tiny
        out = calibrated.clamp(min=floor).log().to(z.dtype).reshape(moved.shape)
        return torch.movedim(out, -1, 1)


class HistogramBinning(_OneVsRest):
    r"""One-vs-rest histogram binning: each class's probability becomes its bin's frequency.

    .. math:: g_k(p) = \frac{\sum_{i: p_{ik} \in b} [y_i = k]}{|\{i : p_{ik} \in b\}|}
        \quad \text{for the bin } b \ni p

    Bins follow :func:`~smoothlab.metrics.expected_calibration_error`'s conventions (right-closed,
    ``"uniform"`` equal width or ``"quantile"`` equal mass per class). An empty bin maps to its
    midpoint. Before fitting every bin holds its midpoint. Renormalisation and output as in the
    module docstring.

    Args:
        num_classes: number of classes ``C >= 2``.
        n_bins: bins per class ``B >= 1``.
        binning: ``"uniform"`` (Guo et al.'s baseline) or ``"quantile"`` (Zadrozny & Elkan).

    Attributes:
        edges: ``(C, B + 1)`` float64 bin edges per class; values: ``(C, B)`` bin frequencies.

    Shape:
        - ``fit``: logits ``(N, C)``, target ``(N,)``.
        - ``forward``: ``(N, C, d1, ...)`` with the class dimension 1, same dtype and device out.

    >>> logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    >>> binning = HistogramBinning(2, n_bins=2).fit(logits, torch.tensor([0, 1, 1, 1]))
    >>> binning.values
    tensor([[0.0000, 0.5000],
            [0.5000, 1.0000]], dtype=torch.float64)
    >>> torch.softmax(binning(logits), 1)[0]
    tensor([0.5000, 0.5000])

    References: Zadrozny & Elkan, "Obtaining calibrated probability estimates from decision trees
    and naive Bayesian classifiers", ICML 2001; Guo et al., ICML 2017 (Section 4.1).
    """

    edges: Tensor
    values: Tensor

    def __init__(self, num_classes: int, *, n_bins: int = 15, binning: Binning = "uniform") -> None:
        super().__init__(num_classes)
        self.n_bins, self.binning = check_binning(n_bins, binning)
        edges = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64)
        self.register_buffer("edges", edges.expand(self.num_classes, -1).clone())
        self.register_buffer("values", (self.edges[:, 1:] + self.edges[:, :-1]) / 2)

    def _fit_maps(self, probs: Tensor, outcome: Tensor) -> None:
        edges, sums = bin_sums(probs, outcome, self.n_bins, self.binning)
        count, _, positives = sums.unbind(1)
        midpoints = (edges[:, 1:] + edges[:, :-1]) / 2
        with torch.no_grad():
            self.edges.copy_(edges)
            self.values.copy_(torch.where(count > 0, positives / count.clamp(min=1), midpoints))

    def _map(self, probs: Tensor) -> Tensor:
        # The binning kernel's rule: a left search on the interior edges puts e_b < p <= e_{b+1}
        # in bin b and p = 0 in bin 0.
        edges = self.edges.to(probs)[:, 1:-1].contiguous()  # .float() may have cast the buffers
        index = torch.searchsorted(edges, probs, right=False)
        return self.values.to(probs).gather(1, index)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, n_bins={self.n_bins}, binning={self.binning!r}"


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (PAV)."""
    means: list[float] = []
    masses: list[float] = []
    lengths: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(value)
        masses.append(weight)
        lengths.append(1)
        # Merge backwards while the last block is below its predecessor.
        while len(means) > 1 and means[-2] > means[-1]:
            mass = masses[-2] + masses[-1]
            means[-2] = (means[-2] * masses[-2] + means[-1] * masses[-1]) / mass
            masses[-2] = mass
            lengths[-2] += lengths[-1]
            del means[-1], masses[-1], lengths[-1]
    return np.repeat(np.array(means, dtype=np.float64), lengths)


# Probabilities within this of a group's smallest value are ties: the same logits in another
# order give probabilities an ulp apart. scikit-learn's IsotonicRegression uses the same rule.
_TIE_TOLERANCE = float(np.finfo(np.float64).resolution)


def _tie_groups(ordered: np.ndarray) -> np.ndarray:
    """Group index of each sorted value; a group spans less than ``_TIE_TOLERANCE``."""
    groups = np.empty(ordered.shape[0], dtype=np.int64)
    group, start = 0, ordered[0]
    for i, value in enumerate(ordered.tolist()):
        if value - start >= _TIE_TOLERANCE:
            group, start = group + 1, value
        groups[i] = group
    return groups


def _isotonic_knots(x: Tensor, outcome: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``x`` (sorted; ties as above) and the isotonic fit of the mean outcome there."""
    order = np.argsort(x.cpu().numpy(), kind="stable")
    ordered, outcomes = x.cpu().numpy()[order], outcome.cpu().numpy()[order]
    groups = _tie_groups(ordered)
    first = np.flatnonzero(np.diff(groups, prepend=-1))  # each group's smallest value is its knot
    counts = np.bincount(groups).astype(np.float64)
    means = np.bincount(groups, weights=outcomes) / counts
    return ordered[first], pool_adjacent_violators(means, counts)


def _padded(rows: list[np.ndarray], like: Tensor) -> Tensor:
    """Stack rows of different lengths (at least 2), repeating each row's last entry."""
    width = max(2, *(row.shape[0] for row in rows))
    padded = [np.concatenate([row, np.repeat(row[-1:], width - row.shape[0])]) for row in rows]
    return torch.as_tensor(np.stack(padded), dtype=torch.float64, device=like.device)


def interpolate(knots: Tensor, fitted: Tensor, x: Tensor) -> Tensor:
    """Per row, the piecewise-linear function through ``(knots, fitted)`` at ``x``, constant
    beyond the first and last knot. Repeated knots (padding) are skipped."""
    x = torch.minimum(torch.maximum(x, knots[:, :1]), knots[:, -1:])
    right = torch.searchsorted(knots, x, right=True).clamp(1, knots.shape[1] - 1)
    x0, x1 = knots.gather(1, right - 1), knots.gather(1, right)
    f0, f1 = fitted.gather(1, right - 1), fitted.gather(1, right)
    span = x1 - x0
    share = torch.where(span > 0, (x - x0) / span.where(span > 0, 1.0), 0.0)
    return f0 + share * (f1 - f0)


class IsotonicCalibration(_OneVsRest):
    r"""One-vs-rest isotonic regression: each class's probability through a monotone map.

    .. math:: g_k = \arg\min_{g \text{ non-decreasing}} \sum_i \big(g(p_{ik}) - [y_i = k]\big)^2

    solved by pool-adjacent-violators on the distinct values of :math:`p_{\cdot k}` (tied values
    share one mean outcome; values within 1e-15 of a tie group's smallest one join it, since the
    softmax of one set of logits in another order differs by an ulp), evaluated between them by
    linear interpolation and held constant beyond the smallest and largest: scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")``, tie rule included.
    Before fitting every :math:`g_k` is the identity. Renormalisation and output as in the
    module docstring.

    Args:
        num_classes: number of classes ``C >= 2``.

    Attributes:
        thresholds: ``(C, M)`` float64 knots per class (a row repeats its last knot to reach
            ``M``); values: ``(C, M)`` the fitted map at them. Their width ``M`` depends on the
            data; :meth:`load_state_dict` adopts the saved width.

    Shape:
        - ``fit``: logits ``(N, C)``, target ``(N,)``.
        - ``forward``: ``(N, C, d1, ...)`` with the class dimension 1, same dtype and device out.

    >>> logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    >>> isotonic = IsotonicCalibration(2).fit(logits, torch.tensor([0, 1, 0, 1]))
    >>> isotonic.values[0]
    tensor([0.0000, 0.5000, 0.5000, 1.0000], dtype=torch.float64)
    >>> torch.softmax(isotonic(logits), 1)[1]
    tensor([0.5000, 0.5000])

    References: Zadrozny & Elkan, "Transforming classifier scores into accurate multiclass
    probability estimates", KDD 2002; Barlow et al., "Statistical Inference under Order
    Restrictions", 1972 (pool-adjacent-violators).
    """

    thresholds: Tensor
    values: Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes)
        identity = torch.tensor([[0.0, 1.0]], dtype=torch.float64).expand(self.num_classes, -1)
        self.register_buffer("thresholds", identity.clone())
        self.register_buffer("values", identity.clone())

    def _fit_maps(self, probs: Tensor, outcome: Tensor) -> None:
        knots = [_isotonic_knots(p, o) for p, o in zip(probs, outcome, strict=True)]
        self.thresholds = _padded([k for k, _ in knots], probs)
        self.values = _padded([v for _, v in knots], probs)

    def _map(self, probs: Tensor) -> Tensor:
        # .float() may have cast the buffers: searchsorted needs one dtype.
        return interpolate(self.thresholds.to(probs), self.values.to(probs), probs)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The knots' width depends on the fitted data: adopt the saved one before copying.
        for name in ("thresholds", "values"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                setattr(self, name, torch.empty(saved.shape, dtype=torch.float64))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, knots={self.thresholds.shape[1]}"
