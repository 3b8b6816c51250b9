"""Lightning glue: the epoch hook of online label smoothing.

IVON and SAM need none (see :mod:`smoothlab.integrations`). Requires ``lightning``
(``pip install smoothlab[lightning]``).
"""

from __future__ import annotations

import lightning.pytorch as pl

from smoothlab.integrations._common import check_losses, online_losses
from smoothlab.online import OnlineLabelSmoothingLoss

__all__ = ["OnlineLabelSmoothingCallback"]


class OnlineLabelSmoothingCallback(pl.Callback):
    r"""Call :meth:`~smoothlab.OnlineLabelSmoothingLoss.next_epoch` after every training epoch.

    Online label smoothing (Zhang et al., 2021) trains epoch :math:`t` against the soft labels
    :math:`S^{(t)}` averaged from epoch :math:`t - 1`; this callback turns each epoch's sums into
    the next matrix. Lightning calls it before its checkpoint callbacks, so a checkpoint taken at
    the end of an epoch holds the matrix the next epoch uses. Keep the loss a submodule of the
    ``LightningModule`` (``self.loss_fn = OnlineLabelSmoothingLoss(...)``): then ``model.eval()``
    during validation stops it from accumulating, and checkpoints save its buffers.

    Args:
        losses: the losses to advance. Default: every :class:`~smoothlab.OnlineLabelSmoothingLoss`
            among the ``LightningModule``'s modules, found when training starts.

    >>> import torch
    >>> loss_fn = OnlineLabelSmoothingLoss(3, alpha=0.5)
    >>> _ = loss_fn(torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([0, 1]))
    >>> module = pl.LightningModule()
    >>> module.loss_fn = loss_fn
    >>> callback = OnlineLabelSmoothingCallback()
    >>> callback.on_train_start(None, module)  # Lightning passes its Trainer; unused here
    >>> callback.on_train_epoch_end(None, module)
    >>> loss_fn.soft_labels[0]
    tensor([0.9094, 0.0453, 0.0453])

    Reference: C.-B. Zhang et al., "Delving Deep into Label Smoothing", IEEE TIP 2021.
    """

    def __init__(self, *losses: OnlineLabelSmoothingLoss) -> None:
        super().__init__()
        self._given = check_losses(losses)
        self._losses = self._given

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the losses (unless given).

        Raises:
            ValueError: if none was given and ``pl_module`` holds none.
        """
        self._losses = online_losses(self._given, pl_module, "pl_module")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Advance every loss to the next epoch's soft labels."""
        for loss in self._losses:
            loss.next_epoch()
