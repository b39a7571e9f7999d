"""Sphinx configuration of the sklearn-replearn documentation.

Build with ``python -m sphinx -W -n --keep-going -b html docs docs/_build/html``
(the README's command). The gallery in ``../examples`` runs at every build.
"""

import os
import sys
import warnings

import sklearn_replearn

project = "sklearn-replearn"
author = "sklearn-replearn developers"
copyright = "sklearn-replearn developers, BSD-3-Clause"
version = release = sklearn_replearn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "benchmarks/results/README.md"]
root_doc = "index"

# API reference: one page per public name, with numpydoc's sections.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# sklearn's type grammar ("int, default=2", "array-like of shape (n, p)") is prose,
# not cross-references.
numpydoc_xref_param_type = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
}
# The build machine may be offline: intersphinx then resolves nothing, and the
# references it would have linked are listed here instead of failing -n.
intersphinx_timeout = 5

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "within_subsection_order": "FileNameSortKey",
    "reference_url": {"sklearn_replearn": None},
    "doc_module": ("sklearn_replearn",),
    "backreferences_dir": None,
}

html_theme = "pydata_sphinx_theme"
html_title = "sklearn-replearn"
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path = []

# Examples draw with matplotlib's non-interactive backend and one torch thread
# per core; warnings from third-party libraries do not fail the build.
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", category=UserWarning, module="matplotlib")
sys.path.insert(0, os.path.abspath("."))
