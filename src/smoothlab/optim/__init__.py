"""Optimizers: IVON (variational learning) and SAM / ASAM (sharpness-aware minimisation)."""

from smoothlab.optim.ivon import IVON, PosteriorPrediction
from smoothlab.optim.sam import SAM, disable_running_stats

__all__ = ["IVON", "SAM", "PosteriorPrediction", "disable_running_stats"]
