"""Maximising an f-divergence between predictions and noisy labels (Wei & Liu, ICLR 2021).

The divergences are a plain table (:data:`DIVERGENCES`) of frozen records: the generator
:math:`f`, the output activation :math:`g_f` and the Fenchel conjugate :math:`f^*` of
Nowozin et al.'s f-GAN (NeurIPS 2016, Table 2), which lists the variational form of each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from smoothlab._checks import check_distribution, check_floating, check_same_shape, fail
from smoothlab.losses._common import Batch, finish, prepare

__all__ = ["DIVERGENCES", "Divergence", "f_divergence_loss"]

_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Divergence:
    r"""One f-divergence :math:`D_f(P \| Q) = E_Q[f(dP/dQ)]` in its variational form.

    Attributes:
        name: the key in :data:`DIVERGENCES`.
        generator: :math:`f(u)` for :math:`u > 0`, convex with :math:`f(1) = 0`.
        activation: :math:`g_f(v)`, mapping any real into the domain of :math:`f^*`.
        conjugate: :math:`f^*(t) = \sup_u\, u t - f(u)` on that domain.
    """

    name: str
    generator: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    conjugate: Callable[[Tensor], Tensor]


class _JeffreyConjugate(torch.autograd.Function):
    r"""Jeffrey's :math:`f^*(t) = W + 1/W + t - 2` with :math:`W = W_0(e^{1-t})`; slope ``1/W``.

    :math:`W` solves :math:`\log W + W = 1 - t`, a convex increasing equation in
    :math:`s = \log W` that Newton's method solves from any start.
    """

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:
        u = (1.0 - t).double()
        s = torch.where(u > 1.0, u.clamp(min=1.0).log(), u)
        for _ in range(60):  # quadratic convergence: a handful of steps from this start
            step = (s.exp() + s - u) / (s.exp() + 1.0)
            s = s - step
            if not bool((step.abs() > 1e-15 * (1.0 + s.abs())).any()):
                break
        w = s.exp().to(t.dtype)
        ctx.save_for_backward(w)
        return w + 1.0 / w + t - 2.0

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        w: Tensor = ctx.saved_tensors[0]
        return grad / w


def _jeffrey_conjugate(t: Tensor) -> Tensor:
    result: Tensor = _JeffreyConjugate.apply(t)  # type: ignore[no-untyped-call]
    return result


_TABLE = (
    Divergence(
        "total-variation",
        lambda u: 0.5 * (u - 1).abs(),
        lambda v: 0.5 * torch.tanh(v),
        lambda t: t,
    ),
    Divergence(
        "jensen-shannon",
        lambda u: u * u.log() - (u + 1) * ((u + 1) / 2).log(),
        lambda v: _LOG2 - F.softplus(-v),
        lambda t: -torch.log(2.0 - t.exp()),
    ),
    Divergence("pearson", lambda u: (u - 1) ** 2, lambda v: v, lambda t: t**2 / 4 + t),
    Divergence(
        "neyman",
        lambda u: (1 - u) ** 2 / u,
        lambda v: -torch.expm1(-v),
        lambda t: 2.0 - 2.0 * torch.sqrt(1.0 - t),
    ),
    Divergence("kl", lambda u: u * u.log(), lambda v: v, lambda t: torch.exp(t - 1.0)),
    Divergence(
        "reverse-kl", lambda u: -u.log(), lambda v: -torch.exp(-v), lambda t: -1.0 - torch.log(-t)
    ),
    Divergence(
        "squared-hellinger",
        lambda u: (u.sqrt() - 1) ** 2,
        lambda v: -torch.expm1(-v),
        lambda t: t / (1.0 - t),
    ),
    Divergence("jeffrey", lambda u: (u - 1) * u.log(), lambda v: v, _jeffrey_conjugate),
)

DIVERGENCES: dict[str, Divergence] = {d.name: d for d in _TABLE}
"""The f-divergences of Wei & Liu's experiments and f-GAN's Table 2, by name."""


def _label_marginal(batch: Batch, prior: object) -> Tensor:
    """The noisy-label marginal: ``prior`` if given, else the batch's label frequencies."""
    assert batch.index is not None  # internal: prepared with allow_probs=False
    k = batch.num_classes
    if prior is not None:
        pi = check_floating("prior", prior)
        check_same_shape("prior", pi, (k,), "one probability per class")
        check_distribution("prior", pi, dim=0, on_device=True)
        return pi.to(device=batch.logits.device, dtype=batch.logits.dtype)
    # counted by index_add_ (bincount and selecting the valid labels read sizes on the host)
    labels = batch.index.reshape(-1)
    dtype = batch.logits.dtype
    ones = torch.ones_like(labels, dtype=dtype)
    taken = ones if batch.valid is None else batch.valid.reshape(-1).to(dtype)
    counts = torch.zeros(k, dtype=dtype, device=labels.device).index_add_(0, labels, taken)
    return counts / counts.sum().clamp(min=1.0)


def f_divergence_loss(
    input: Tensor,
    target: Tensor,
    *,
    divergence: str = "total-variation",
    prior: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Negative variational f-divergence between the joint and the product of (prediction, label).

    Wei & Liu train a classifier :math:`h` by maximising :math:`D_f(P_{h \times \tilde Y} \|
    Q_{h \perp \tilde Y})` between the joint distribution of prediction and noisy label and
    the product of their marginals, through its variational lower bound

    .. math::
        D_f \ge E_{P}[g(X, \tilde Y)] - E_{Q}[f^*(g(X, \tilde Y))].

    With the variational function tied to the classifier as in their experiments,
    :math:`g(x, j) = g_f(p_j(x))` (the probability of label :math:`j` through the divergence's
    output activation), the loss of an example is

    .. math::
        \ell = -g_f(p_{\tilde y}) + \sum_j \pi_j\, f^*\big(g_f(p_j)\big)

    whose batch mean is minus the bound. The expectation under :math:`Q` is taken exactly over
    the label marginal :math:`\pi` (``prior``, or else the frequencies of the batch's
    non-ignored labels), where the authors sample a random peer label; the two agree in
    expectation. The loss can be negative.

    Divergences (:data:`DIVERGENCES`): ``"total-variation"``, ``"jensen-shannon"``,
    ``"pearson"``, ``"neyman"``, ``"kl"``, ``"reverse-kl"``, ``"squared-hellinger"``,
    ``"jeffrey"`` (its conjugate involves Lambert's W, solved by Newton's method; the other
    conjugates are closed forms).

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: noisy class indices ``(N, d1, ...)``.
        divergence: a name in :data:`DIVERGENCES`.
        prior: ``(C,)`` label marginal; ``None`` uses the batch's.
        ignore_index: class index whose positions contribute nothing (nor count in the marginal).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> f_divergence_loss(logits, torch.tensor([0, 1]), reduction="none")
    tensor([-0.1376, -0.0778])
    >>> f_divergence_loss(logits, torch.tensor([0, 1]), divergence="kl")
    tensor(-0.0999)

    Reference: J. Wei and Y. Liu, "When Optimizing f-Divergence is Robust with Label Noise",
    ICLR 2021; S. Nowozin, B. Cseke, R. Tomioka, "f-GAN: Training Generative Neural Samplers
    using Variational Divergence Minimization", NeurIPS 2016.
    """
    if not isinstance(divergence, str) or divergence not in DIVERGENCES:
        raise fail("divergence", f"one of {', '.join(map(repr, DIVERGENCES))}", divergence)
    form = DIVERGENCES[divergence]
    batch = prepare(
        input, target, ignore_index=ignore_index, reduction=reduction, allow_probs=False
    )
    pi = _label_marginal(batch, prior)
    g = form.activation(torch.softmax(batch.logits, dim=1))
    product = (batch.class_view(pi) * form.conjugate(g)).sum(dim=1)
    return finish(batch, product - batch.gather(g), None)
