r"""The label noise of label smoothing methods, in the same form as IVON's (Yang et al., 2025).

Any target transform :math:`y \mapsto y'` adds the noise :math:`\epsilon = y' - y`. Uniform
smoothing adds the same noise to every example of a class, :math:`r(u - y)` (Eq. 1); online
label smoothing (Zhang et al., 2021) a class-wise noise learned from the model (Eq. 5); IVON an
example-wise one (:func:`~smoothlab.analysis.predictive_label_noise`). Putting them side by side
is Fig. 1, 3 and 4 of the paper.

References: S.-H. Yang, Z. Liu, G. M. Marconi, M. E. Khan, "Variational Learning Induces
Adaptive Label Smoothing", 2025. C.-B. Zhang et al., "Delving Deep into Label Smoothing", IEEE
TIP 2021.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    check_class_indices,
    check_distribution,
    check_floating,
    check_real,
    fail,
)
from smoothlab.targets import smooth_targets

__all__ = ["class_smoothed_labels", "online_smoothing_label_noise", "smoothing_label_noise"]


def smoothing_label_noise(
    target: Tensor,
    num_classes: int,
    smoothing: float,
    *,
    prior: Tensor | None = None,
    exclusive: bool = False,
) -> Tensor:
    r"""The constant noise of label smoothing: :math:`\epsilon = r(\pi - y)` (Eq. 1).

    With the uniform prior :math:`\pi = u = 1/K` (PyTorch's convention) this is
    :math:`r(u - y)`; any prior or ``exclusive`` spreading of
    :func:`smoothlab.targets.smooth_targets` is accepted. Rows sum to 0 and the magnitude
    (:func:`~smoothlab.analysis.noise_magnitude`) is :math:`r (1 - 1/K)` for every example.

    Args:
        target: class indices ``(N, ...)``.
        num_classes, smoothing, prior, exclusive: as in :func:`~smoothlab.targets.smooth_targets`.

    Shape:
        - returns ``(N, C, ...)``.

    >>> smoothing_label_noise(torch.tensor([0, 2]), 3, 0.3)
    tensor([[-0.2000,  0.1000,  0.1000],
            [ 0.1000,  0.1000, -0.2000]])
    """
    smoothed = smooth_targets(target, num_classes, smoothing, prior=prior, exclusive=exclusive)
    return smoothed - smooth_targets(target, num_classes, 0.0, dtype=smoothed.dtype)


def online_smoothing_label_noise(target: Tensor, soft_labels: Tensor, *, alpha: float) -> Tensor:
    r"""The class-wise noise of online label smoothing: :math:`(1 - \alpha)(S_y - y)` (Eq. 5).

    Online label smoothing trains on :math:`\alpha\, y + (1 - \alpha)\, S_y`, where row
    :math:`S_y` of the soft-label matrix is the average prediction on class :math:`y`; ``alpha``
    is the hard-label weight, as in :class:`smoothlab.online.OnlineLabelSmoothingLoss` (whose
    ``soft_labels`` buffer can be passed here). Yang et al.'s :math:`\alpha` is our
    :math:`1 - \alpha`.

    Args:
        target: class indices ``(N,)``.
        soft_labels: :math:`S`, shape ``(K, K)``, each row a distribution.
        alpha: weight of the hard label, ``0 <= alpha <= 1``.

    Shape:
        - returns ``(N, K)``.

    >>> S = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    >>> online_smoothing_label_noise(torch.tensor([0, 1]), S, alpha=0.5)
    tensor([[-0.1000,  0.1000],
            [ 0.1500, -0.1500]])
    """
    check_floating("soft_labels", soft_labels)
    if soft_labels.dim() != 2 or soft_labels.shape[0] != soft_labels.shape[1]:
        raise fail("soft_labels", "a square (K, K) matrix", soft_labels)
    check_distribution("soft_labels", soft_labels, dim=1)
    rate = 1.0 - check_real("alpha", alpha, low=0.0, high=1.0)
    num_classes = soft_labels.shape[0]
    check_class_indices("target", target, num_classes)
    if target.dim() != 1:
        raise fail("target", "class indices of shape (N,)", target)
    return smoothing_label_noise(target, num_classes, rate, prior=soft_labels[target.long()])


def class_smoothed_labels(target: Tensor, noise: Tensor) -> Tensor:
    r"""The average smoothed label of each class: :math:`S_{cj} = \operatorname{mean}_{i: y_i = c}
    (y_i + \epsilon_i)_j` (Yang et al., Fig. 4).

    Condenses any method's label noise :math:`\epsilon` (IVON's example-wise
    :func:`~smoothlab.analysis.predictive_label_noise`, or :func:`smoothing_label_noise`,
    :func:`online_smoothing_label_noise`) into one ``(K, K)`` matrix whose row :math:`c` is the
    label a class-:math:`c` example is effectively trained on, on average. Label smoothing gives
    :math:`(1 - r) I + r/K` exactly; online smoothing puts the off-diagonal mass on the classes
    the model confuses with :math:`c`, while IVON's noise may take mass off them: it is positive on
    the true class wherever the model is confident, so its rows can leave the simplex. Rows of
    classes absent from ``target`` are NaN.

    Args:
        target: class indices ``(N,)``.
        noise: :math:`\epsilon`, ``(N, K)`` floating (rows of label noise sum to 0).

    Shape:
        - returns ``(K, K)``, in ``noise``'s dtype.

    >>> target = torch.tensor([0, 0, 1])
    >>> class_smoothed_labels(target, smoothing_label_noise(target, 2, 0.2))
    tensor([[0.9000, 0.1000],
            [0.1000, 0.9000]])
    """
    check_floating("noise", noise)
    if noise.dim() != 2:
        raise fail("noise", "label noise of shape (N, K)", noise)
    if target.dim() != 1 or target.shape[0] != noise.shape[0]:
        raise fail("target", f"class indices of shape ({noise.shape[0]},)", target)
    num_classes = noise.shape[1]
    check_class_indices("target", target, num_classes)
    labels = target.long()
    smoothed = noise.clone()
    smoothed[torch.arange(len(labels)), labels] += 1
    sums = torch.zeros(num_classes, num_classes, dtype=noise.dtype, device=noise.device)
    sums.index_add_(0, labels, smoothed)
    counts = torch.bincount(labels, minlength=num_classes).to(noise.dtype)
    return sums / counts.unsqueeze(1)  # 0 / 0 = NaN for absent classes
