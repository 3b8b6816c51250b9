"""The lab (L3): config-driven, resumable, parallel comparisons of label-smoothing methods.

``smoothlab run CONFIG`` expands a config's grid (methods x parameters x noise kinds x noise rates
x seeds), trains every run not yet in the results store on a local process pool or a Ray cluster,
prints mean +- std over seeds, and ``smoothlab report`` turns the store into CSV, figures (PNG
and SVG) and one HTML page. Optional dependencies (rich, matplotlib, safetensors,
scikit-learn, scipy, ray) are the ``lab`` and ``ray`` extras.
"""

from smoothlab.lab.plan.grid import RunConfig, expand_grid, run_key
from smoothlab.lab.plan.loading import load_config
from smoothlab.lab.plan.methods import METHODS
from smoothlab.lab.plan.models import MODELS, build_model
from smoothlab.lab.plan.schema import Config, ConfigError
from smoothlab.lab.run.runner import run_experiment
from smoothlab.lab.run.store import ResultsStore

__all__ = [
    "METHODS",
    "MODELS",
    "Config",
    "ConfigError",
    "ResultsStore",
    "RunConfig",
    "build_model",
    "expand_grid",
    "load_config",
    "run_experiment",
    "run_key",
]
