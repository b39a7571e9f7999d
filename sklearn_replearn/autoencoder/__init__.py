"""AutoencoderTransformer and VAETransformer: neural transformers trained by
reconstruction.

Modules: ``_base`` (their shared base: parameters, the encoder/decoder
builder, fit/partial_fit/transform through ``_engine``), ``_autoencoder`` and
``_vae`` (one estimator each) and ``_modules`` (their plain torch modules and
losses, no scikit-learn, no skorch).
"""

from ._autoencoder import AutoencoderTransformer
from ._vae import VAETransformer

__all__ = ["AutoencoderTransformer", "VAETransformer"]
