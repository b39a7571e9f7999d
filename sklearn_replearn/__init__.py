"""Representation-learning transformers for scikit-learn, built on PyTorch."""

from ._version import __version__
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
