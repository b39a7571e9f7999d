"""Plain torch modules and losses of the autoencoders (no sklearn, no skorch)."""

from ._autoencoder import Autoencoder, SparseAutoencoder
from ._conv import make_conv_decoder, make_conv_encoder
from ._layers import ACTIVATIONS, MaskingNoise, make_activation, make_mlp
from ._vae import LOGVAR_RANGE, VAE, gaussian_kl

__all__ = [
    "ACTIVATIONS",
    "Autoencoder",
    "LOGVAR_RANGE",
    "MaskingNoise",
    "SparseAutoencoder",
    "VAE",
    "gaussian_kl",
    "make_activation",
    "make_conv_decoder",
    "make_conv_encoder",
    "make_mlp",
]
