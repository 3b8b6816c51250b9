"""The fused jobs of the loss family, by their old address.

Each loss's coefficient rule now sits beside the loss (:mod:`smoothlab.losses.smoothing`,
:mod:`smoothlab.losses.relaxation`, :mod:`smoothlab.losses.confidence`); this module only keeps
the names importable from here.
"""

from smoothlab.losses.confidence import penalty_job
from smoothlab.losses.relaxation import relaxation_job
from smoothlab.losses.smoothing import index_job, soft_job

__all__ = ["index_job", "penalty_job", "relaxation_job", "soft_job"]
