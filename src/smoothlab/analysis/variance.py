r"""TSLA's :math:`\delta`: how much a smoothing label changes the stochastic gradient's variance.

Xu et al. (Section 3, Eq. 4) compare the variance of the stochastic gradient computed with an
introduced label :math:`\hat y` (the uniform distribution, a teacher's prediction) with the
one-hot one, both measured around the full one-hot gradient :math:`\nabla F_S(w)`:

.. math::
    \hat\sigma^2 = \mathbb E_{(x, \hat y)} \|\nabla \ell(\hat y, f(w; x)) - \nabla F_S(w)\|^2
        = \delta\, \sigma^2, \qquad
    \sigma^2 = \mathbb E_{(x, y)} \|\nabla \ell(y, f(w; x)) - \nabla F_S(w)\|^2 .

Smoothing with :math:`\hat y` speeds SGD up when :math:`\delta < 1` (Theorem 3).

Reference: Y. Xu, Y. Xu, Q. Qian, H. Li, R. Jin, "Towards Understanding Label Smoothing", 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from smoothlab._checks import check_class_indices, check_distribution, check_int, check_tensor, fail

__all__ = ["GradientVariance", "gradient_variance_ratio"]


@dataclass(frozen=True, eq=False)
class GradientVariance:
    r"""TSLA's variance ratio and its two parts (0-dim float64 tensors).

    Attributes:
        delta: :math:`\delta = \hat\sigma^2 / \sigma^2`.
        variance: :math:`\hat\sigma^2`, with the introduced labels.
        one_hot_variance: :math:`\sigma^2`, with the one-hot labels.
    """

    delta: Tensor
    variance: Tensor
    one_hot_variance: Tensor


def _check_labels(labels: Tensor | None, n: int, k: int, like: Tensor) -> Tensor:
    """The introduced labels as ``(N, K)``, in the dtype and on the device of ``like``."""
    if labels is None:
        return torch.full((n, k), 1.0 / k, dtype=like.dtype, device=like.device)
    check_tensor("labels", labels)
    if tuple(labels.shape) not in ((k,), (n, k)):
        raise fail("labels", f"of shape ({k},) or ({n}, {k})", f"!shape {tuple(labels.shape)}")
    check_distribution("labels", labels)
    return labels.to(like).expand(n, k)


def _gradient_moments(model: nn.Module) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(x, q) -> (sum_i |g_i|^2, sum_i g_i)`` in float64 for the per-row gradients ``g_i`` of
    :math:`-\\sum_k q_k \\log p_k`.

    Reduced parameter by parameter: the ``(B, P)`` matrix of per-example gradients is never
    copied, cast or concatenated (for a 200k-parameter MLP each copy is hundreds of megabytes).
    """
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(weights: dict[str, Tensor], x: Tensor, q: Tensor) -> Tensor:
        logits = functional_call(model, (weights, buffers), (x.unsqueeze(0),))
        return -(q * torch.log_softmax(logits.squeeze(0), -1)).sum()

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))

    def moments(x: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        grads = [g.flatten(1) for g in per_example(params, x, q).values()]
        norms = torch.cat([torch.linalg.vector_norm(g, dim=1, keepdim=True) for g in grads], 1)
        square = norms.double().square().sum()
        return square, torch.cat([g.sum(0).double() for g in grads])

    return moments


def gradient_variance_ratio(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    labels: Tensor | None = None,
    *,
    batch_size: int = 256,
) -> GradientVariance:
    r"""Estimate TSLA's :math:`\delta` on a data set from per-example gradients (Xu et al., Eq. 4).

    .. math::
        \delta = \frac{\frac1N \sum_i \|g_i(\hat y_i) - \bar g\|^2}
                      {\frac1N \sum_i \|g_i(y_i) - \bar g\|^2}, \qquad
        \bar g = \frac1N \sum_i g_i(y_i)

    where :math:`g_i(q) = \nabla_w [-\sum_k q_k \log \mathrm{softmax}(f(w; x_i))_k]` over every
    parameter that requires a gradient (per-example gradients by ``torch.func.vmap``). As in the
    paper the numerator uses the introduced label :math:`\hat y` itself, not the smoothed label
    :math:`(1 - \theta) y + \theta \hat y`; pass the smoothed labels (e.g. from
    :func:`smoothlab.targets.smooth_targets`) as ``labels`` to measure theirs. Call it at
    checkpoints to follow :math:`\delta` along training. Norms and in-chunk sums are taken in
    the model's dtype and accumulated in float64; :math:`\delta` is inf or NaN when
    :math:`\sigma^2 = 0` (every example has the same gradient). The model must map a batch of
    one example to ``(1, K)`` logits; put it in ``eval()`` mode if it has batch norm or dropout.

    Args:
        model: the network.
        inputs: ``(N, ...)`` examples.
        target: ``(N,)`` class indices (the one-hot labels :math:`y`).
        labels: :math:`\hat y`, ``(K,)`` shared by all examples or ``(N, K)``; default uniform.
        batch_size: examples per vmapped chunk (memory is ``batch_size`` times the parameters).

    Shape:
        - returns 0-dim float64 tensors.

    With a constant input the gradient is :math:`p - q` whatever the weights, and with class
    frequencies :math:`\pi` and uniform :math:`\hat y = u`,
    :math:`\delta = \|\pi - u\|^2 / (1 - \|\pi\|^2)`, here :math:`(1/24) / (5/8) = 1/15`:

    >>> out = gradient_variance_ratio(nn.Linear(1, 3), torch.ones(4, 1), torch.tensor([0, 0, 1, 2]))
    >>> round(out.delta.item(), 6), round(1 / 15, 6)
    (0.066667, 0.066667)

    Reference: Xu et al., "Towards Understanding Label Smoothing", 2020, Section 3.
    """
    check_tensor("inputs", inputs)
    check_tensor("target", target)
    if target.dim() != 1 or inputs.dim() == 0 or inputs.shape[0] != target.shape[0]:
        raise fail("target", "of shape (N,) for inputs of N examples", target)
    size = check_int("batch_size", batch_size, low=1)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise fail("model", "a module with trainable parameters", f"!{type(model).__name__}")
    n = target.shape[0]
    if n == 0:
        raise fail("target", "non-empty", target)
    with torch.no_grad():
        k = model(inputs[:1]).shape[-1]
    check_class_indices("target", target, k)
    hat = _check_labels(labels, n, k, trainable[0])
    moments = _gradient_moments(model)
    device = trainable[0].device
    square = torch.zeros(2, dtype=torch.float64, device=device)  # sum |g_i|^2, sum |h_i|^2
    total = torch.zeros(2, sum(p.numel() for p in trainable), dtype=torch.float64, device=device)
    for start in range(0, n, size):
        x, q = inputs[start : start + size], hat[start : start + size]
        one_hot = torch.nn.functional.one_hot(target[start : start + size].long(), k).to(q.dtype)
        for row, label in enumerate((one_hot, q)):
            chunk_square, chunk_sum = moments(x, label)
            square[row] += chunk_square
            total[row] += chunk_sum
    g_bar, h_bar = total / n
    # Expanding |v - g_bar|^2 lets one pass over the data serve both variances; float64 totals
    # keep the cancellation small.
    one_hot_variance = square[0] / n - g_bar.dot(g_bar)
    variance = square[1] / n - 2 * h_bar.dot(g_bar) + g_bar.dot(g_bar)
    return GradientVariance(variance / one_hot_variance, variance, one_hot_variance)
