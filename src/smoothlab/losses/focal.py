"""Focal loss and its sample-dependent calibration variant FLSD (Mukhoti et al., 2020).

The stateful AdaFocal, whose focusing parameter follows validation calibration, is
:class:`smoothlab.adafocal.AdaFocalLoss`; it shares :func:`signed_focal_nll` with these.
Both losses here have a fused path (``focal_job``: the ``FOCAL`` kind of the C and Triton row
kernels, one sweep of a row for loss and gradient) and their composition of torch operations,
which is their specification and runs wherever the kernels do not (``fused=False``, float64,
spatial positions on the CPU).
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import check_real
from smoothlab.losses._common import Batch, example_weight, finish_weighted, prepare
from smoothlab.losses._fused import Job, use_fused
from smoothlab.losses._native_rows import FOCAL, NativeRows
from smoothlab.losses._served import run_or_compose

__all__ = ["focal_loss", "sample_dependent_focal_loss", "signed_focal_nll"]


def signed_focal_nll(log_p_y: Tensor, gamma: Tensor | float) -> Tensor:
    r"""The focal term for a signed focusing parameter: focal for ``gamma >= 0``, inverse below.

    .. math::
        \ell = \begin{cases} -(1 - p_y)^{\gamma} \log p_y & \gamma \ge 0 \\
                             -(1 + p_y)^{|\gamma|} \log p_y & \gamma < 0 \end{cases}

    ``gamma`` is a float or a tensor broadcastable against ``log_p_y``. The inverse focal loss
    (Ghosh et al.) up-weights confident examples. :math:`1 - p_y` is computed as
    ``-expm1(log p_y)``, which stays positive for confident examples where ``1 - p`` would
    round to 0.

    >>> signed_focal_nll(torch.tensor([-0.5, -0.5]), torch.tensor([2.0, -2.0]))
    tensor([0.0774, 1.2905])
    """
    gamma_t = torch.as_tensor(gamma, dtype=log_p_y.dtype, device=log_p_y.device)
    sign = torch.where(gamma_t < 0, -1.0, 1.0).to(log_p_y.dtype)
    base = torch.where(gamma_t < 0, 1.0 + log_p_y.exp(), -torch.expm1(log_p_y))
    return -(base ** (sign * gamma_t)) * log_p_y


def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Focal loss: cross-entropy down-weighted on well-classified examples.

    .. math::
        \ell = -w_y\,(1 - p_y)^{\gamma} \log p_y

    ``gamma = 0`` is cross-entropy. ``weight`` plays the role of Lin et al.'s class balance
    :math:`\alpha_t`; ``mean`` divides by the total weight, as ``F.cross_entropy`` does. Mukhoti
    et al. show that focal loss is an upper bound of KL divergence minus :math:`\gamma` times the
    prediction's entropy, hence its better calibration.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)``.
        gamma: the focusing parameter, ``gamma >= 0``.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        fused: compute loss and gradient in one sweep of each row (C kernels for float32 or
            half ``(N, C)`` CPU logits, Triton for CUDA); ``False`` (and every other input)
            runs the composition of torch operations, with the same numbers.
        inplace_grad: write the gradient into ``input``'s storage (the fused path only).

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> focal_loss(logits, torch.tensor([0, 1]), gamma=2.0, reduction="none")
    tensor([0.0111, 0.0991])

    Reference: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, "Focal Loss for Dense Object
    Detection", ICCV 2017; J. Mukhoti, V. Kulharia, A. Sanyal, S. Golodetz, P. Torr,
    P. Dokania, "Calibrating Deep Neural Networks using Focal Loss", NeurIPS 2020.
    """
    g = check_real("gamma", gamma, low=0.0)
    fast = use_fused(fused, inplace_grad, weight)
    batch = prepare(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        allow_probs=False,
        upcast=not fast,
    )

    def composition(batch: Batch) -> Tensor:
        log_p_y = batch.gather(torch.log_softmax(batch.logits, dim=1))
        return finish_weighted(batch, signed_focal_nll(log_p_y, g))

    if fast:
        return run_or_compose(focal_job(batch, 0.0, g, g), batch, inplace_grad, composition)
    return composition(batch)


def sample_dependent_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    threshold: float = 0.2,
    gamma_below: float = 5.0,
    gamma_above: float = 3.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Sample-dependent focal loss (FLSD): a larger ``gamma`` for poorly fit examples.

    .. math::
        \ell = -(1 - p_y)^{\gamma(p_y)} \log p_y, \qquad
        \gamma(p_y) = \begin{cases} \gamma_< & p_y < \theta \\ \gamma_\ge & p_y \ge \theta
        \end{cases}

    The defaults are Mukhoti et al.'s FLSD-53 (:math:`\gamma = 5` below :math:`p_y = 0.2`,
    3 above). :math:`\gamma` is chosen from the current prediction and treated as a constant
    (the loss is piecewise smooth; no gradient flows through the choice).

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)``.
        threshold: :math:`\theta \in [0, 1]`.
        gamma_below: :math:`\gamma_< \ge 0`, used where :math:`p_y < \theta`.
        gamma_above: :math:`\gamma_\ge \ge 0`, used elsewhere.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        fused: as :func:`focal_loss`; the kernels choose each row's ``gamma`` from their own
            float32 :math:`p_y`.
        inplace_grad: as :func:`focal_loss`.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 0.0]])
    >>> sample_dependent_focal_loss(logits, torch.tensor([0, 0]), reduction="none")
    tensor([2.3783e-03, 2.4549e+00])

    Reference: J. Mukhoti, V. Kulharia, A. Sanyal, S. Golodetz, P. Torr, P. Dokania,
    "Calibrating Deep Neural Networks using Focal Loss", NeurIPS 2020.
    """
    theta = check_real("threshold", threshold, low=0.0, high=1.0)
    below = check_real("gamma_below", gamma_below, low=0.0)
    above = check_real("gamma_above", gamma_above, low=0.0)
    fast = use_fused(fused, inplace_grad, weight)
    batch = prepare(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        allow_probs=False,
        upcast=not fast,
    )

    def composition(batch: Batch) -> Tensor:
        log_p_y = batch.gather(torch.log_softmax(batch.logits, dim=1))
        gamma = torch.where(log_p_y.detach().exp() < theta, below, above).to(log_p_y.dtype)
        return finish_weighted(batch, signed_focal_nll(log_p_y, gamma))

    if fast:
        job = focal_job(batch, theta, below, above)
        return run_or_compose(job, batch, inplace_grad, composition)
    return composition(batch)


def focal_job(batch: Batch, threshold: float, below: float, above: float) -> Job:
    """The fused job: ``w_y`` times the focal term with ``gamma = below`` where ``p_y <
    threshold``, else ``above`` (focal loss: threshold 0), as the ``FOCAL`` kind's ``param``,
    ``tau`` and ``strength``."""
    native = NativeRows(FOCAL, example_weight(batch), strength=above, tau=threshold, param=below)
    return Job.of(batch, None, False, native)
