"""Figures for papers and reports: calibration, sweeps, and the seeds' figures (L3).

Every function returns a :class:`matplotlib.figure.Figure` (or draws into the ``ax`` it is given)
in a column-wide paper style; :func:`save_figure` writes it as SVG and PNG. matplotlib is an
optional dependency (the ``lab`` extra), imported only when a figure is drawn, so importing this
module, like ``import smoothlab``, needs only torch and numpy.
"""

from smoothlab.plots._base import save_figure
from smoothlab.plots.calibration import confidence_histogram, reliability_diagram, reliability_grid
from smoothlab.plots.labels import smoothed_label_maps
from smoothlab.plots.maps import label_noise_vs_mean_logit, simplex_loss_map
from smoothlab.plots.representations import penultimate_projection
from smoothlab.plots.sweeps import Sweep, metric_vs_epoch, metric_vs_noise

__all__ = [
    "Sweep",
    "confidence_histogram",
    "label_noise_vs_mean_logit",
    "metric_vs_epoch",
    "metric_vs_noise",
    "penultimate_projection",
    "reliability_diagram",
    "reliability_grid",
    "save_figure",
    "simplex_loss_map",
    "smoothed_label_maps",
]
