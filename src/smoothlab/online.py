"""Online label smoothing (Zhang et al., 2021): class-wise soft labels learned from the model."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from smoothlab._checks import check_int, check_real, check_reduction, fail
from smoothlab.losses._common import finish, prepare

__all__ = ["OnlineLabelSmoothingLoss"]


class OnlineLabelSmoothingLoss(nn.Module):
    r"""Online label smoothing: soft labels are the average correct prediction of each class.

    During epoch :math:`t` the loss of an example with class :math:`y` is

    .. math::
        \ell = \alpha\, \mathrm{CE}(z, y) + (1 - \alpha)\, \Big(-\sum_j S^{(t)}_{yj} \log p_j\Big)

    where row :math:`y` of the soft-label matrix :math:`S^{(t)}` is the mean softmax output of
    the training examples of class :math:`y` that the model classified correctly during epoch
    :math:`t - 1`. In training mode each forward call accumulates those outputs (detached);
    :meth:`next_epoch` turns the sums into :math:`S^{(t+1)}` and resets them. A class without
    any correctly classified example gets the uniform row :math:`1/K`.

    **The first epoch's matrix** is :math:`S^{(0)} = (1 - s_0) I + s_0 / K` with
    ``init_smoothing`` :math:`s_0` (default 0.1): the first epoch trains with the hard label
    plus ordinary uniform smoothing; ``init_smoothing=0`` makes it plain cross-entropy.

    The accumulators and :math:`S` are buffers, so they are saved and restored with
    ``state_dict``. Accumulation happens only in training mode (``model.train()``; call
    ``loss_fn.train()`` / ``.eval()`` with it). When ``torch.distributed`` is initialised,
    :meth:`next_epoch` sums the accumulators over all processes first, so every process gets the
    same matrix.

    Args:
        num_classes: ``K >= 2``.
        alpha: weight of the hard-label cross-entropy, ``0 <= alpha <= 1``.
        init_smoothing: uniform smoothing of the first epoch's matrix, ``0 <= s_0 <= 1``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input ``(N, C)`` or ``(N, C, d1, ...)`` logits; target ``(N, d1, ...)`` class indices.

    >>> loss_fn = OnlineLabelSmoothingLoss(3, alpha=0.5)
    >>> logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    >>> round(loss_fn(logits, torch.tensor([0, 1])).item(), 4)
    0.2506
    >>> loss_fn.next_epoch()
    >>> loss_fn.soft_labels[0]
    tensor([0.9094, 0.0453, 0.0453])

    Reference: C.-B. Zhang, P.-T. Jiang, Q. Hou, Y. Wei, Q. Han, Z. Li, M.-M. Cheng, "Delving Deep
    into Label Smoothing", IEEE TIP 2021.
    """

    soft_labels: Tensor
    prob_sums: Tensor
    counts: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        alpha: float = 0.5,
        init_smoothing: float = 0.1,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        k = check_int("num_classes", num_classes, low=2)
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        s0 = check_real("init_smoothing", init_smoothing, low=0.0, high=1.0)
        self.num_classes = k
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        eye = torch.eye(k, dtype=torch.float64)
        self.register_buffer("soft_labels", ((1 - s0) * eye + s0 / k).float())
        self.register_buffer("prob_sums", torch.zeros(k, k, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(k, dtype=torch.float64))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        batch = prepare(
            input,
            target,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            allow_probs=False,
        )
        if batch.num_classes != self.num_classes:
            raise fail("input", f"{self.num_classes} classes along dim 1", input)
        log_p = torch.log_softmax(batch.logits, dim=1)
        assert batch.index is not None
        soft = self.soft_labels.to(log_p.dtype)[batch.index].movedim(-1, 1)
        soft_ce = -torch.where(soft != 0, soft * log_p, 0.0).sum(dim=1)
        loss = self.alpha * -batch.gather(log_p) + (1 - self.alpha) * soft_ce
        if self.training:
            self._accumulate(log_p.detach(), batch.index, batch.valid)
        return finish(batch, loss, None)

    @torch.no_grad()
    def _accumulate(self, log_p: Tensor, index: Tensor, valid: Tensor | None) -> None:
        """Add the softmax outputs of correctly classified examples to their class's row."""
        probs = log_p.exp().movedim(1, -1).reshape(-1, self.num_classes)
        labels = index.reshape(-1)
        correct = probs.argmax(dim=1) == labels
        if valid is not None:
            correct &= valid.reshape(-1)
        # every row is added, the others with weight 0 (exact: x + 0 = x): selecting the
        # correct rows would have a data-dependent size, which a GPU reports to the host
        sums = self.prob_sums
        taken = correct.to(sums)
        labels = labels.to(sums.device)
        sums.index_add_(0, labels, probs.to(sums) * taken.unsqueeze(1))
        self.counts.index_add_(0, labels, taken)

    @torch.no_grad()
    def next_epoch(self) -> None:
        """Turn this epoch's sums into next epoch's soft labels, then reset the sums."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.prob_sums)
            dist.all_reduce(self.counts)
        seen = self.counts > 0
        uniform = torch.full_like(self.prob_sums, 1.0 / self.num_classes)
        rows = torch.where(
            seen[:, None], self.prob_sums / self.counts.clamp(min=1)[:, None], uniform
        )
        self.soft_labels.copy_(rows)
        self.prob_sums.zero_()
        self.counts.zero_()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}, reduction={self.reduction!r}"
