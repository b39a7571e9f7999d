"""Representation-learning transformers for scikit-learn, built on PyTorch."""

from ._autoencoder import AutoencoderTransformer
from ._dictionary import DictionaryLearner
from ._pretrained import PretrainedCNNFeatures
from ._vae import VAETransformer
from ._version import __version__

__all__ = [
    "AutoencoderTransformer",
    "DictionaryLearner",
    "PretrainedCNNFeatures",
    "VAETransformer",
    "__version__",
]
