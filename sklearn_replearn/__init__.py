"""Representation-learning transformers for scikit-learn, built on PyTorch."""

from ._autoencoder import AutoencoderTransformer
from ._version import __version__

__all__ = ["AutoencoderTransformer", "__version__"]
