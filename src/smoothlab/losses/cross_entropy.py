"""``cross_entropy``: PyTorch's ``F.cross_entropy`` signature on smoothlab's fused kernels.

A user porting ``F.cross_entropy(x, y, label_smoothing=0.1)`` replaces only the name: same
positional order, keyword names and defaults, same numbers, and on top negative smoothing,
a ``prior=``, the z-loss and tanh softcap of the GPU kernels, and half-precision batches that
PyTorch overflows.
"""

from __future__ import annotations

import warnings

from torch import Tensor

from smoothlab._checks import Reduction, check_real, check_reduction, fail
from smoothlab.losses.smoothing import label_smoothing_cross_entropy

__all__ = ["cross_entropy", "resolve_reduction"]


def resolve_reduction(
    size_average: object, reduce: object, reduction: object, *, stacklevel: int = 3
) -> Reduction:
    """``reduction`` after PyTorch's legacy arguments, with PyTorch's deprecation warnings.

    As in PyTorch, ``size_average`` and ``reduce`` (``None`` meaning ``True``) override
    ``reduction`` when either is given: both true is ``"mean"``, ``reduce`` alone ``"sum"``,
    ``reduce=False`` ``"none"``; ``"elementwise_mean"`` is the old name of ``"mean"``.
    """
    for name, value in (("size_average", size_average), ("reduce", reduce)):
        if value is not None and not isinstance(value, bool):
            raise fail(name, "a bool or None", value, kind=TypeError)
    if size_average is not None or reduce is not None:
        reduction = "none" if reduce is False else "sum" if size_average is False else "mean"
        warnings.warn(
            "size_average and reduce args will be deprecated, please use "
            f"reduction='{reduction}' instead.",
            UserWarning,
            stacklevel=stacklevel,
        )
    elif reduction == "elementwise_mean":
        warnings.warn(
            "reduction='elementwise_mean' is deprecated. Please use reduction='mean' instead.",
            UserWarning,
            stacklevel=stacklevel,
        )
        reduction = "mean"
    return check_reduction(reduction)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    prior: Tensor | None = None,
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    r"""``torch.nn.functional.cross_entropy`` with the same signature, on smoothlab's kernels.

    Unreduced, with :math:`\log p = \mathrm{log\_softmax}(z)`, rate :math:`r` =
    ``label_smoothing``, class weights :math:`w` (1 without ``weight``) and prior :math:`\pi`
    (uniform :math:`1/C` without ``prior``):

    .. math::
        \ell = -(1 - r)\, w_y \log p_y \;-\; r \sum_j w_j\, \pi_j \log p_j

    for class indices :math:`y`, and :math:`\ell = -\sum_j w_j ((1 - r) t_j + r \pi_j) \log p_j`
    for probability targets :math:`t`; ``mean`` divides by :math:`\sum_n w_{y_n}` over
    non-ignored positions (class indices) or by the number of positions (probabilities).
    With ``softcap`` :math:`c` the logits are first capped, :math:`z \leftarrow c \tanh(z / c)`,
    and with ``lse_square_scale`` :math:`s` each non-ignored position adds
    :math:`s\,(\log \sum_j e^{z_j})^2`, unweighted, to :math:`\ell` (``mean`` keeps its
    denominator); both default to off, which is PyTorch's loss.

    Every input PyTorch accepts gives PyTorch's numbers, with one documented exception: a term
    with no target mass (a zero class weight or probability) is 0 even at a ``-inf`` logit,
    where PyTorch returns NaN (see :func:`label_smoothing_cross_entropy`). Accepted on top:

    * ``label_smoothing < 0``: negative (generalized) label smoothing, Wei et al., ICML 2022
      (PyTorch silently treats it as 0). The loss is then unbounded below.
    * ``prior=``: a class prior ``(C,)`` or per-example distributions of the input's shape
      (a teacher's predictions, Xu et al., 2020) in place of the uniform :math:`1/C`.
    * float16 / bfloat16 logits are computed in float32, and the loss is float32 (as under
      autocast); PyTorch's float16 loss overflows to ``inf`` past 65504.
    * ``lse_square_scale=`` (PaLM's z-loss, Chowdhery et al., 2022) and ``softcap=`` (Gemma 2's
      tanh cap), the options of Liger-Kernel's cross-entropy, as in
      :func:`label_smoothing_cross_entropy`.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` (or ``()``), or probabilities of the input's
            shape.
        weight: per-class weights ``(C,)``, finite and non-negative.
        size_average: deprecated (PyTorch's); with ``reduce``, overrides ``reduction``.
        ignore_index: class index whose positions contribute nothing (class-index targets).
        reduce: deprecated (PyTorch's); see ``size_average``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: the rate :math:`r \le 1`; negative for negative label smoothing.
        prior: ``None`` (uniform), ``(C,)``, or per-example ``(N, C, d1, ...)``.
        lse_square_scale: the z-loss scale ``s >= 0``.
        softcap: ``c > 0`` caps the logits at ``c tanh(z / c)`` first; ``None``: off.

    Shape:
        - input: ``(N, C, d1, ...)``, ``(N, C)`` or ``(C,)``.
        - target: ``(N, d1, ...)``, ``(N,)`` or ``()`` indices, or the input's shape.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> target = torch.tensor([0, 1])
    >>> cross_entropy(logits, target, label_smoothing=0.1)
    tensor(0.5047)
    >>> torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    tensor(0.5047)
    >>> cross_entropy(logits, target, label_smoothing=-0.5)  # PyTorch would use 0
    tensor(-0.1453)
    >>> cross_entropy(logits, target, label_smoothing=0.2, prior=torch.tensor([0.5, 0.5, 0.0]))
    tensor(0.5214)
    >>> half = torch.tensor([[20.0, -20.0]], dtype=torch.float16).expand(4096, 2)
    >>> ones = torch.ones(4096, dtype=torch.long)
    >>> cross_entropy(half, ones), torch.nn.functional.cross_entropy(half, ones)
    (tensor(40.), tensor(inf, dtype=torch.float16))
    >>> cross_entropy(logits, target, label_smoothing=0.1, lse_square_scale=1e-2, softcap=2.0)
    tensor(0.5933)

    References: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016; Wei et al.,
    "To Smooth or Not?", ICML 2022; Xu et al., "Towards Understanding Label Smoothing", 2020;
    Chowdhery et al., "PaLM", 2022 (z-loss); Gemma Team, "Gemma 2", 2024 (softcap).
    """
    mode = resolve_reduction(size_average, reduce, reduction)
    rate = check_real("label_smoothing", label_smoothing, high=1.0)
    return label_smoothing_cross_entropy(
        input,
        target,
        rate,
        prior=prior,
        weight=weight,
        ignore_index=ignore_index,
        reduction=mode,
        lse_square_scale=lse_square_scale,
        softcap=softcap,
    )
