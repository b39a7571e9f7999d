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
    # MathJax shipped with the site (copied into _static/mathjax), so that
    # formulas render when the pages are read offline, from a local build.
    "sphinx-mathjax-offline",
    "sphinx.ext.doctest",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "benchmarks/results/README.md"]
root_doc = "index"

# API reference: one page per public name, with numpydoc's sections.
autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
# The page's table of contents names methods without their class.
toc_object_entries_show_parents = "hide"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# sklearn's type grammar ("int, default=2", "array-like of shape (n, p)"):
# numpydoc reads it word by word, so that names like ``n_features_in_`` stay
# text; only the aliases below become links (as in scikit-learn's conf.py).
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = {
    "ndarray": "numpy.ndarray",
    "Tensor": "torch.Tensor",
    "torch.Tensor": "torch.Tensor",
    "Module": "torch.nn.Module",
    "nn.Module": "torch.nn.Module",
    "torch.nn.Module": "torch.nn.Module",
    "Pipeline": "sklearn.pipeline.Pipeline",
}

# The build machine may be offline, so intersphinx reads small inventories
# shipped in _inventories/ (written by _inventories/make_inventories.py from
# the names these pages link to), never the network: a build gives the same
# links, and the same warnings, with or without a connection.
_INVENTORIES = os.path.join(os.path.dirname(__file__), "_inventories")
intersphinx_mapping = {
    name: (url, os.path.join(_INVENTORIES, f"{name}.inv"))
    for name, url in {
        "python": "https://docs.python.org/3",
        "numpy": "https://numpy.org/doc/stable",
        "sklearn": "https://scikit-learn.org/stable",
        "torch": "https://docs.pytorch.org/docs/stable",
    }.items()
}

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "within_subsection_order": "FileNameSortKey",
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
# Pages without sub-pages need no section navigation: the column it leaves
# empty goes to the text (wide code blocks, tables).
html_sidebars = {page: [] for page in ("index", "install", "whats_new", "developers")}
html_static_path = []

# Examples draw with matplotlib's non-interactive backend; matplotlib's own
# UserWarnings (e.g. about that backend) are not shown in their output.
os.environ.setdefault("MPLBACKEND", "Agg")
# The examples' models are small: one torch/BLAS thread runs them about as fast
# as two on an idle machine, and several times faster on a busy one (two
# spinning threads per library contend for the cores). Set here, before any
# import of torch.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
warnings.filterwarnings("ignore", category=UserWarning, module="matplotlib")
sys.path.insert(0, os.path.abspath("."))
