"""Plain torch modules and losses of the autoencoders (no sklearn, no skorch)."""

from ._anchored import AnchoredDecoder, AnchoredEncoder, anchor_on_pca
from ._autoencoder import Autoencoder, SparseAutoencoder
from ._conv import make_conv_decoder, make_conv_encoder
from ._layers import ACTIVATIONS, MaskingNoise, make_activation, make_mlp
from ._vae import LOGVAR_RANGE, VAE, gaussian_kl

__all__ = [
    "ACTIVATIONS",
    "AnchoredDecoder",
    "AnchoredEncoder",
    "Autoencoder",
    "LOGVAR_RANGE",
    "MaskingNoise",
    "SparseAutoencoder",
    "VAE",
    "anchor_on_pca",
    "gaussian_kl",
    "make_activation",
    "make_conv_decoder",
    "make_conv_encoder",
    "make_mlp",
]
