"""AdaFocal (Ghosh et al., NeurIPS 2022): focal loss whose gamma follows validation calibration."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from smoothlab._checks import check_floating, check_int, check_real, check_reduction, fail
from smoothlab.losses._common import finish_weighted, prepare
from smoothlab.losses.focal import signed_focal_nll

__all__ = ["AdaFocalLoss"]


class AdaFocalLoss(nn.Module):
    r"""AdaFocal: one focusing parameter per confidence bin, adapted to validation calibration.

    A training example whose true-class probability :math:`p_y` falls in bin :math:`b` gets
    the focal loss with :math:`\gamma_b` (the inverse focal loss :math:`-(1 + p_y)^{|\gamma_b|}
    \log p_y` when :math:`\gamma_b < 0`, see :func:`smoothlab.losses.focal.signed_focal_nll`).
    After each epoch, :meth:`update` measures calibration on validation data in equal-mass bins
    of the top-label confidence, with gap :math:`E_b = C_b - A_b` (mean confidence minus
    accuracy), and applies Ghosh et al.'s update with its switch to the inverse focal loss
    (as in the authors' released implementation):

    .. math::
        \gamma_b \leftarrow \gamma_b\, \exp(\operatorname{sign}(\gamma_b)\, \lambda E_b)

    so an overconfident bin (:math:`E_b > 0`) gets more focal, an underconfident one less;
    a :math:`\gamma_b` whose magnitude falls below the switch point :math:`S` jumps across
    zero to :math:`\mp S` (focal to inverse focal and back), and :math:`\gamma_b` is clipped
    to :math:`[\gamma_{min}, \gamma_{max}]`. The validation bins' edges become the training
    bins' edges (the first starts at 0, the last ends at 1). Defaults are the authors': 15
    bins, :math:`\lambda = 1`, :math:`\gamma_0 = 1`, :math:`S = 0.2`,
    :math:`[\gamma_{min}, \gamma_{max}] = [-2, 20]`. :math:`\gamma` is chosen from the
    detached :math:`p_y`. ``gammas`` and ``edges`` are buffers (saved with ``state_dict``).

    Args:
        num_bins: ``B >= 1``.
        lam: the update rate :math:`\lambda \ge 0`.
        gamma_init: the initial :math:`\gamma` of every bin.
        gamma_min: lower clip, ``<= gamma_init``.
        gamma_max: upper clip, ``>= gamma_init``.
        switch: the switch point :math:`S \ge 0`.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input ``(N, C)`` or ``(N, C, d1, ...)`` logits; target ``(N, d1, ...)`` class indices.

    >>> loss_fn = AdaFocalLoss(num_bins=2)
    >>> logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    >>> round(loss_fn(logits, torch.tensor([0, 0])).item(), 4)
    1.0048
    >>> loss_fn.update(torch.tensor([[4.0, 0.0], [0.5, 0.0], [0.0, 3.0], [1.0, 0.0]]),
    ...                torch.tensor([1, 0, 1, 0]))
    >>> loss_fn.gammas  # underconfident low bin: less focal; overconfident high bin: more
    tensor([0.7238, 1.5957], dtype=torch.float64)
    >>> loss_fn.edges
    tensor([0.0000, 0.9526, 1.0000], dtype=torch.float64)

    Reference: A. Ghosh, T. Schaaf, M. Gormley, "AdaFocal: Calibration-aware Adaptive Focal
    Loss", NeurIPS 2022.
    """

    gammas: Tensor
    edges: Tensor
    weight: Tensor | None

    def __init__(
        self,
        num_bins: int = 15,
        *,
        lam: float = 1.0,
        gamma_init: float = 1.0,
        gamma_min: float = -2.0,
        gamma_max: float = 20.0,
        switch: float = 0.2,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.num_bins = check_int("num_bins", num_bins, low=1)
        self.lam = check_real("lam", lam, low=0.0)
        init = check_real("gamma_init", gamma_init)
        self.gamma_min = check_real("gamma_min", gamma_min, high=init)
        self.gamma_max = check_real("gamma_max", gamma_max, low=init)
        self.switch = check_real("switch", switch, low=0.0)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("gammas", torch.full((num_bins,), init, dtype=torch.float64))
        self.register_buffer("edges", torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64))

    def gamma_of(self, p_y: Tensor) -> Tensor:
        """The focusing parameter of each probability: its bin's, ``edges[b] <= p < edges[b+1]``."""
        inner = self.edges[1:-1].to(device=p_y.device, dtype=p_y.dtype)
        bins = torch.bucketize(p_y.detach(), inner, right=True)
        return self.gammas.to(device=p_y.device, dtype=p_y.dtype)[bins]

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        batch = prepare(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            allow_probs=False,
        )
        log_p_y = batch.gather(torch.log_softmax(batch.logits, dim=1))
        return finish_weighted(batch, signed_focal_nll(log_p_y, self.gamma_of(log_p_y.exp())))

    @torch.no_grad()
    def update(self, logits: Tensor, target: Tensor) -> None:
        """Update every bin's gamma from validation ``(M, C)`` logits and ``(M,)`` labels.

        Needs ``M >= num_bins`` examples, so that every equal-mass bin holds one.
        """
        z = check_floating("logits", logits, min_dim=2)
        if z.dim() != 2 or z.shape[0] < self.num_bins:
            raise fail("logits", f"of shape (M, C) with M >= num_bins={self.num_bins}", z)
        batch = prepare(z, target, allow_probs=False)
        probs = torch.softmax(batch.logits.double(), dim=1)
        conf, pred = probs.max(dim=1)
        assert batch.index is not None
        order = torch.argsort(conf)
        chunks = torch.tensor_split(order, self.num_bins)
        for b, chunk in enumerate(chunks):
            gap = float(conf[chunk].mean() - (pred[chunk] == batch.index[chunk]).double().mean())
            self.gammas[b] = self._next_gamma(float(self.gammas[b]), gap)
            if b > 0:
                self.edges[b] = conf[chunk[0]]

    def _next_gamma(self, gamma: float, gap: float) -> float:
        """One step of the AdaFocal rule for one bin: scale, switch across zero, clip."""
        step = gamma * math.exp((1.0 if gamma >= 0 else -1.0) * self.lam * gap)
        if abs(step) < self.switch:
            step = -self.switch if step > 0 else self.switch
        return min(max(step, self.gamma_min), self.gamma_max)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, lam={self.lam}, reduction={self.reduction!r}"
