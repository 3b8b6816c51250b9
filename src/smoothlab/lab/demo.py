"""The embedded demo config: ``smoothlab demo`` (and ``make demo``) runs it.

Sized to finish in well under two minutes on two CPU cores, process start-up included: the
1797 scikit-learn digits (bundled, no download), a small MLP, large batches, few epochs.
"""

from __future__ import annotations

import tomllib

from smoothlab.lab.plan.loading import apply_overrides, config_from_dict
from smoothlab.lab.plan.schema import Config

__all__ = ["DEMO_TOML", "demo_config"]

DEMO_TOML = """
name = "demo"
description = "Six methods on scikit-learn's digits under 0 / 20 / 40 % symmetric label noise"
seeds = 2

[data]
dataset = "digits"
val_fraction = 0.15

[model]
name = "mlp"
hidden = [128]

[train]
epochs = 30
batch_size = 128
optimizer = "sgd"
lr = 0.05
momentum = 0.9
nesterov = true
lr_schedule = "cosine"
warmup_epochs = 2
select = "val_accuracy"

[noise]
kinds = ["symmetric"]
rates = [0.0, 0.2, 0.4]

[methods.ce]
[methods.ls]
smoothing = 0.2
[methods.nls]
smoothing = -0.2
[methods.relax]
alpha = 0.1
[methods.cp]
beta = 0.3
[methods.ivon]
lr = 0.2
hess_init = 0.5
"""


def demo_config(overrides: tuple[str, ...] = ()) -> Config:
    """The demo's config, with ``--set`` overrides applied."""
    return config_from_dict(apply_overrides(tomllib.loads(DEMO_TOML), overrides))
