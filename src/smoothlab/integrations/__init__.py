"""Glue for the training frameworks users already have (layer 3; each imported only when used).

- :mod:`smoothlab.integrations.lightning` (``pip install smoothlab[lightning]``):
  :class:`~smoothlab.integrations.lightning.OnlineLabelSmoothingCallback`.
- :mod:`smoothlab.integrations.hf` (``pip install smoothlab[hf]``): a ``transformers``
  :class:`~smoothlab.integrations.hf.OnlineLabelSmoothingCallback` and
  :class:`~smoothlab.integrations.hf.IVONCallback`.

:class:`~smoothlab.optim.IVON` and :class:`~smoothlab.optim.SAM` need no glue under Lightning:
return them (and any torch scheduler on them) from ``configure_optimizers``; their ``step``
runs Lightning's closure at sampled (IVON) or perturbed (SAM) weights, in automatic and manual
optimization alike. ``import smoothlab.integrations`` imports neither framework.
"""

__all__: list[str] = []
