"""The autoencoder module: encoder, decoder and an output link."""

import torch
from torch import nn

from ._layers import MaskingNoise

__all__ = ["Autoencoder"]


class Autoencoder(nn.Module):
    """Encoder and decoder joined by a code; optionally denoising.

    ``forward`` returns the decoder's raw output (logits for a Bernoulli/BCE
    loss), which is what the training loss takes; ``encode`` gives the code and
    ``decode`` the reconstruction on the data's scale.

    Parameters
    ----------
    encoder, decoder : torch.nn.Module
        Maps ``(batch, n_features) -> (batch, n_components)`` and back.
    output : {"identity", "sigmoid"}, default="identity"
        Link applied by ``decode``: "sigmoid" when the loss is BCE on logits.
    masking_noise : float, default=0.0
        Fraction of inputs zeroed while training (denoising autoencoder).

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.nn import Autoencoder, make_mlp
    >>> model = Autoencoder(make_mlp((6, 2), "relu"), make_mlp((2, 6), "relu"))
    >>> model.encode(torch.zeros(3, 6)).shape
    torch.Size([3, 2])
    """

    def __init__(self, encoder, decoder, output="identity", masking_noise=0.0):
        super().__init__()
        self.corrupt = MaskingNoise(masking_noise)
        self.encoder = encoder
        self.decoder = decoder
        self.output = output

    def forward(self, x):
        return self.decoder(self.encoder(self.corrupt(x)))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        raw = self.decoder(code)
        return torch.sigmoid(raw) if self.output == "sigmoid" else raw

    def reconstruct(self, x):
        return self.decode(self.encode(x))
