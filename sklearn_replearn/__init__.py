"""Representation-learning transformers for scikit-learn, built on PyTorch.

The estimators and subpackages load on first use (a module ``__getattr__``),
so ``import sklearn_replearn`` imports neither torch's extras nor skorch:
``from sklearn_replearn import DictionaryLearner`` loads torch and
scikit-learn only, ``AutoencoderTransformer`` adds skorch (its training
engine), ``PretrainedCNNFeatures`` torchvision, and the optional libraries
(timm, transformers, dask, ray, matplotlib, skops) load where they are used.
"""

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover - for static analysis only
    from .autoencoder import AutoencoderTransformer, VAETransformer
    from .dictionary import DictionaryLearner
    from .vision import PretrainedCNNFeatures

__all__ = [
    "AutoencoderTransformer",
    "DictionaryLearner",
    "PretrainedCNNFeatures",
    "VAETransformer",
    "__version__",
]

# Public name -> the subpackage that defines it.
_ESTIMATORS = {
    "AutoencoderTransformer": "autoencoder",
    "DictionaryLearner": "dictionary",
    "PretrainedCNNFeatures": "vision",
    "VAETransformer": "autoencoder",
}
# Public subpackages and modules, reachable as attributes.
_SUBMODULES = ("autoencoder", "datasets", "dictionary", "exceptions", "plotting",
               "scale", "sparse", "vision")


def __getattr__(name):
    if name in _ESTIMATORS:
        module = importlib.import_module(f".{_ESTIMATORS[name]}", __name__)
        value = getattr(module, name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__, *_SUBMODULES})
