"""A streaming calibration meter that sums its state across processes (L1: torch only).

Evaluating in batches, or on several processes, must give the numbers of the one-shot functions on
the concatenated data. For equal-width bins this needs only sufficient statistics: per bin the
count, the sum of confidences and the number correct, the same per class for the classwise error,
plus the sample count and the sums of NLL and Brier score, ``3 B (C + 1) + 3`` float64 numbers in
all (exact counts up to 2**53 samples). Equal-mass bins depend on the quantiles of *all*
confidences, so with ``binning="quantile"`` the meter keeps every sample's confidence,
correctness, probabilities and label: memory grows with the data (``8 (C + 3)`` bytes a sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from smoothlab._checks import fail
from smoothlab.metrics._binning import (
    Binning,
    Norm,
    bin_sums,
    check_binning,
    check_norm,
    class_bin_sums,
    error_from_sums,
    uniform_edges,
)
from smoothlab.metrics._validate import check_probs_target
from smoothlab.metrics.calibration import ReliabilityBins, reliability_from_sums
from smoothlab.metrics.scores import brier_per_sample, nll_per_sample, top_label

__all__ = ["CalibrationMeter", "CalibrationSummary"]


@dataclass(frozen=True, eq=False)
class CalibrationSummary:
    """What :meth:`CalibrationMeter.compute` returns (0-dim float64 tensors; NaN if no samples).

    Attributes:
        count: number of samples seen (summed over processes).
        accuracy: top-1 accuracy, as :func:`~smoothlab.metrics.accuracy`.
        ece: calibration error with the meter's bins and norm, as
            :func:`~smoothlab.metrics.expected_calibration_error`.
        classwise: classwise calibration error with the meter's bins and norm, as
            :func:`~smoothlab.metrics.classwise_calibration_error`.
        nll: mean negative log-likelihood, as :func:`~smoothlab.metrics.negative_log_likelihood`.
        brier: mean multi-class Brier score, as :func:`~smoothlab.metrics.brier_score`.
        bins: the reliability diagram, as :func:`~smoothlab.metrics.reliability_bins`.
    """

    count: int
    accuracy: Tensor
    ece: Tensor
    classwise: Tensor
    nll: Tensor
    brier: Tensor
    bins: ReliabilityBins


class CalibrationMeter:
    r"""Accumulate accuracy, ECE, classwise ECE, NLL, Brier score and reliability bins.

    ``update(probs, target)`` adds a batch, ``compute()`` returns a :class:`CalibrationSummary`
    equal (to float64 rounding) to the one-shot functions on all batches together, ``reset()``
    forgets everything. When :mod:`torch.distributed` is initialised (and ``sync`` is true),
    ``compute()`` sums the state of all processes of ``process_group`` with ``all_reduce``
    (``all_gather`` for quantile bins), so every process must call it; the local state is left
    untouched, so ``compute()`` may be called repeatedly. The state lives on the device of the
    first batch (a CUDA device for NCCL). The classwise state's shape depends on the number of
    classes, which a process learns from its first batch: in a distributed run every process
    must update at least once (an empty ``(0, C)`` batch will do).

    .. math::
        \mathrm{ECE} = \sum_b \frac{n_b}{N} \Big|\frac{S^{\mathrm{correct}}_b}{n_b} -
        \frac{S^{\mathrm{conf}}_b}{n_b}\Big|, \quad n_b = \sum_{\text{batches}} n_b^{(t)}, \dots

    Args:
        n_bins, norm, binning: as in :func:`~smoothlab.metrics.expected_calibration_error`.
        sync: sum state across processes when ``torch.distributed`` is initialised.
        process_group: the group to sum over (``None``: the default group).

    >>> meter = CalibrationMeter(n_bins=2)
    >>> meter.update(torch.tensor([[0.5, 0.5], [0.75, 0.25]]), torch.tensor([1, 0]))
    >>> meter.update(torch.tensor([[0.05, 0.95]]), torch.tensor([0]))
    >>> summary = meter.compute()
    >>> summary.count, summary.ece, summary.accuracy
    (3, tensor(0.4000, dtype=torch.float64), tensor(0.3333, dtype=torch.float64))

    Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    def __init__(
        self,
        *,
        n_bins: int = 15,
        norm: Norm = "l1",
        binning: Binning = "uniform",
        sync: bool = True,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        self.norm = check_norm(norm)
        self.n_bins, self.binning = check_binning(n_bins, binning)
        self.sync = sync
        self.process_group = process_group
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._num_classes: int | None = None
        self._totals = torch.zeros(3, dtype=torch.float64)  # samples, sum of NLL, sum of Brier
        self._sums = torch.zeros(3, self.n_bins, dtype=torch.float64)  # uniform bins only
        self._class_sums: Tensor | None = None  # (C, 3, B) per-class sums, uniform bins only
        # (C + 3, n): confidence, correctness, the C probabilities and the label; quantile only
        self._pairs: list[Tensor] = []

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Add a batch: ``(N, C)`` probabilities (rows sum to 1) and ``(N,)`` class indices."""
        probs, target = check_probs_target(probs, target)
        if self._num_classes is None:
            self._num_classes = probs.shape[1]
            self._totals = self._totals.to(probs.device)
            self._sums = self._sums.to(probs.device)
        elif probs.shape[1] != self._num_classes:
            expected = f"a tensor with {self._num_classes} columns (as in the earlier updates)"
            raise fail("probs", expected, f"!{probs.shape[1]} columns")
        conf, correct = top_label(probs, target)
        stats = [conf.new_tensor(conf.shape[0]), nll_per_sample(probs, target).sum()]
        self._totals += torch.stack([*stats, brier_per_sample(probs, target).sum()])
        if self.binning == "quantile":
            columns = [conf[None], correct[None], probs.to(torch.float64).T, target[None]]
            self._pairs.append(torch.cat([c.to(torch.float64) for c in columns]))
        else:
            self._sums += bin_sums(conf[None], correct[None], self.n_bins, "uniform")[1][0]
            batch = class_bin_sums(probs, target, self.n_bins, "uniform")[1]
            self._class_sums = batch if self._class_sums is None else self._class_sums + batch

    def compute(self) -> CalibrationSummary:
        """Summary of all batches (of all processes when distributed); NaN if there are none."""
        totals = self._all_reduce(self._totals.clone())
        if self.binning == "quantile":
            pairs = self._gather_pairs()
            edges, sums = bin_sums(pairs[:1], pairs[1:2], self.n_bins, "quantile")
            edges, sums = edges[0], sums[0]
            class_sums = class_bin_sums(pairs[2:-1].T, pairs[-1].long(), self.n_bins, "quantile")[1]
        else:
            sums = self._all_reduce(self._sums.clone())
            edges = uniform_edges(self.n_bins, sums.device)
            class_sums = sums.new_zeros(0, 3, self.n_bins)  # no classes seen yet
            if self._class_sums is not None:
                class_sums = self._all_reduce(self._class_sums.clone())
        count = totals[0]
        return CalibrationSummary(
            count=round(float(count)),
            accuracy=sums[2].sum() / count,
            ece=error_from_sums(sums, self.norm),
            # The mean over no classes is NaN, as the error over no samples is.
            classwise=error_from_sums(class_sums, self.norm).mean(),
            nll=totals[1] / count,
            brier=totals[2] / count,
            bins=reliability_from_sums(edges, sums),
        )

    def _distributed(self) -> bool:
        return self.sync and dist.is_available() and dist.is_initialized()

    def _all_reduce(self, state: Tensor) -> Tensor:
        if self._distributed():
            dist.all_reduce(state, op=dist.ReduceOp.SUM, group=self.process_group)
        return state

    def _gather_pairs(self) -> Tensor:
        device = self._totals.device
        rows = 2 if self._num_classes is None else self._num_classes + 3
        empty = torch.zeros(rows, 0, dtype=torch.float64, device=device)
        local = torch.cat([empty, *self._pairs], 1)
        if not self._distributed():
            return local
        # Processes hold different numbers of samples: share the lengths, pad, gather, trim.
        world = dist.get_world_size(self.process_group)
        length = torch.tensor([local.shape[1]], device=device)
        lengths = [torch.zeros_like(length) for _ in range(world)]
        dist.all_gather(lengths, length, group=self.process_group)
        longest = max(int(size) for size in lengths)
        padded = torch.cat([local, local.new_zeros(rows, longest - local.shape[1])], 1)
        gathered = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(gathered, padded, group=self.process_group)
        return torch.cat(
            [part[:, : int(size)] for part, size in zip(gathered, lengths, strict=True)], 1
        )
