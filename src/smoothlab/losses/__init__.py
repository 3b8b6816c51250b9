"""The label-smoothing loss family as pure functions (L1).

Each function takes PyTorch's ``(input, target)`` with the class dimension at 1, a keyword-only
hyperparameter, ``weight`` / ``ignore_index`` / ``reduction`` where they make sense, and validates
its inputs with one message template. Their modules live in :mod:`smoothlab.nn`.

**Fused by default.** Every loss computes its gradient during the forward pass (one softmax
sweep plus a few row-wise operations, chunked over rows; see :mod:`smoothlab.losses._fused`) and
autograd keeps only that gradient: one ``N x C`` buffer, and none with ``inplace_grad=True``,
which writes the gradient into the logits' storage (for callers that no longer need the logits;
overwriting logits that autograd still needs is detected and raises). Values, gradients and
errors equal the composition of torch operations, which stays available as ``fused=False`` and
is what the tests compare against. The composition runs instead when

* ``fused=False`` (needed for double backward, ``create_graph=True``, and forward-mode AD: the
  fused backward raises a clear error under ``create_graph=True`` rather than returning a
  gradient that would silently drop the second-order terms);
* ``torch.compile`` traces the call (the compiler fuses the composition itself, and graphs stay
  whole);
* a prior, probability targets or weights require a gradient.

Focal loss, FLSD, GCE, SCE and the logit regularisers (MaxSup, MbLS, LogitNorm, the logit
penalty) have only the C and Triton row kernels (``smoothlab.losses._served``): they run
fused on 2-D float32 or half CPU logits with class indices and on CUDA, and their composition
everywhere else. Loss correction, peer loss and the f-divergence loss are compositions only.

Half-precision inputs are computed and accumulated in float32 chunk by chunk; the gradient is
returned in the input's dtype. :mod:`smoothlab.losses.linear` fuses the output layer too, for
vocabulary-scale heads that never materialise the ``N x V`` logits.
"""

from smoothlab.losses.confidence import confidence_penalty_loss
from smoothlab.losses.cross_entropy import cross_entropy
from smoothlab.losses.fdivergence import f_divergence_loss
from smoothlab.losses.focal import focal_loss, sample_dependent_focal_loss
from smoothlab.losses.linear import (
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
)
from smoothlab.losses.regularized import (
    logit_norm_loss,
    logit_penalty_loss,
    margin_label_smoothing_loss,
    max_suppression_loss,
    max_suppression_schedule,
)
from smoothlab.losses.relaxation import label_relaxation_loss, log1mexp
from smoothlab.losses.robust import (
    backward_corrected_cross_entropy,
    forward_corrected_cross_entropy,
    generalized_cross_entropy,
    peer_loss,
    symmetric_cross_entropy,
)
from smoothlab.losses.smoothing import Weighting, label_smoothing_cross_entropy

__all__ = [
    "Weighting",
    "backward_corrected_cross_entropy",
    "confidence_penalty_loss",
    "cross_entropy",
    "f_divergence_loss",
    "focal_loss",
    "forward_corrected_cross_entropy",
    "generalized_cross_entropy",
    "label_relaxation_loss",
    "label_smoothing_cross_entropy",
    "linear_confidence_penalty_loss",
    "linear_label_relaxation_loss",
    "linear_label_smoothing_cross_entropy",
    "log1mexp",
    "logit_norm_loss",
    "logit_penalty_loss",
    "margin_label_smoothing_loss",
    "max_suppression_loss",
    "max_suppression_schedule",
    "peer_loss",
    "sample_dependent_focal_loss",
    "symmetric_cross_entropy",
]
