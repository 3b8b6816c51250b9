"""Sphinx configuration of smoothlab's site: ``make docs`` builds it into ``docs/_build/html``.

Everything is generated from the code at build time (``_ext/smoothlab_docs.py``) and the guides'
code is executed (``_ext/smoothlab_run.py``). The build is offline: MathJax is shipped into the
output by ``sphinx-mathjax-offline`` (a pip package), no page loads anything from the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

import smoothlab

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

project = "smoothlab"
author = "smoothlab developers"
copyright = "smoothlab developers, MIT licence"
release = smoothlab.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx-mathjax-offline",
    "myst_parser",
    "smoothlab_docs",
    "smoothlab_run",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md", "**/README.md"]
# docs/reproductions.md, written by the reproductions work, becomes a page when it exists.
if (HERE / "reproductions.md").exists():
    tags.add("reproductions")  # type: ignore[name-defined]  # noqa: F821 (Sphinx's global)

html_theme = "furo"
html_title = f"smoothlab {release}"
html_static_path = ["_static"]
html_css_files = ["smoothlab.css"]
html_show_sourcelink = False

# Docstrings are Google style (Args:, Returns:, Attributes:) with PyTorch's Shape: section.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Shape", "notes_style")]
# Attributes: entries become attribute targets, so :attr:`temperature` resolves.
napoleon_use_ivar = False

# A public class without its own docstring must fail the build, not show nn.Module's.
autodoc_inherit_docstrings = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autosummary_generate = False
add_module_names = False
python_display_short_literal_types = True

# Broken references are errors; what cannot resolve offline (PyTorch, NumPy, the standard
# library: no intersphinx inventories without a network) is listed, everything else must.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|np|typing|collections|abc|enum|pathlib|os|argparse)(\..*)?"),
    (r"py:.*", r"(matplotlib|lightning|transformers|sqlite3|dataclasses|contextlib)(\..*)?"),
    (r"py:.*", r"(Tensor|Generator|Module|Parameter|Optimizer|Figure|Axes|Path|Any|Callable)"),
    (r"py:.*", r"(int|float|str|bool|None|dict|list|tuple|object|type|bytes|Sequence)"),
    # The lab's stages are internal (its API is smoothlab.lab's __all__), as are private modules
    # and names outside every __all__; signatures and docstrings still name them.
    (r"py:.*", r"smoothlab\.lab\.(plan|train|run|report)\..*"),
    (r"py:.*", r"smoothlab(\.\w+)*\._\w+(\.\w+)*"),
    (r"py:.*", r"(XScale|IMAGE_SIDE)"),
    # Methods a module inherits from torch.nn.Module.
    (r"py:meth", r"(load_state_dict|state_dict|forward|zero_grad|step)"),
    # MatrixScaling's docstring lists weight and bias on one Attributes line (two entries needed).
    (r"py:attr", r"bias"),
]

myst_heading_anchors = 3
# A markdown page written for GitHub links files outside the site (configs/, benchmarks/).
suppress_warnings = ["myst.xref_missing"]
