"""The autoencoder modules: plain (or denoising), and sparse."""

import torch
from torch import nn
from torch.nn import functional as F

from ._layers import MaskingNoise

__all__ = ["Autoencoder", "SparseAutoencoder"]


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


def _code_reader(decoder):
    """The decoder's first ``nn.Linear`` if it reads the code directly, else None.

    Only a Linear reached before any other parameterised layer qualifies: its
    column ``j`` is what code unit ``j`` writes into the decoder.
    """
    for layer in decoder.modules():
        if isinstance(layer, nn.Linear):
            return layer
        if next(layer.parameters(recurse=False), None) is not None:
            return None
    return None


class SparseAutoencoder(Autoencoder):
    """An autoencoder trained with an L1 penalty on its code.

    ``loss`` is the reconstruction error (mean squared error, or binary
    cross-entropy on logits for ``output="sigmoid"``) plus

    ``2 * sparsity / n_features * mean over the batch of sum_j |code_j| * ||d_j||``

    where ``d_j`` is the column of the decoder's first linear layer that code
    unit ``j`` writes to. Weighting each unit by the norm of its decoder column
    makes the penalty blind to rescaling (shrinking a code unit while growing
    its column changes nothing), so it cannot be dodged that way; for a linear
    decoder the mean-squared loss is then ``2 / n_features`` times the sparse
    coding objective ``0.5 * ||x - x_hat||^2 + sparsity * sum_j |code_j|``
    with unit-norm atoms, so ``sparsity`` plays the part of
    ``DictionaryLearner``'s ``alpha``. A decoder whose first parameterised
    layer is not a ``Linear`` on the code gets the plain L1 penalty.

    ``forward`` returns ``(decoder output, code)``, which ``loss`` takes.

    Parameters
    ----------
    encoder, decoder : torch.nn.Module
        Maps ``(batch, n_features) -> (batch, n_components)`` and back.
    output : {"identity", "sigmoid"}, default="identity"
        Link applied by ``decode``: "sigmoid" when the loss is BCE on logits.
    masking_noise : float, default=0.0
        Fraction of inputs zeroed while training (denoising autoencoder).
    sparsity : float, default=1.0
        Weight of the L1 penalty on the code.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.nn import make_mlp
    >>> from sklearn_replearn.nn._autoencoder import SparseAutoencoder
    >>> model = SparseAutoencoder(make_mlp((6, 4), "relu"),
    ...                           make_mlp((4, 6), "relu"), sparsity=0.5)
    >>> x = torch.randn(3, 6)
    >>> model.loss(model(x), x).shape
    torch.Size([])
    """

    def __init__(self, encoder, decoder, output="identity", masking_noise=0.0,
                 sparsity=1.0):
        super().__init__(encoder, decoder, output=output, masking_noise=masking_noise)
        self.sparsity = sparsity
        # A plain list: the layer is already registered inside ``decoder``.
        self._code_reader = [_code_reader(decoder)]

    def forward(self, x):
        code = self.encoder(self.corrupt(x))
        return self.decoder(code), code

    def loss(self, output, x):
        """Reconstruction error plus the weighted L1 penalty on the code."""
        raw, code = output
        if self.output == "sigmoid":
            error = F.binary_cross_entropy_with_logits(raw, x)
        else:
            error = F.mse_loss(raw, x)
        magnitude = code.abs()
        reader = self._code_reader[0]
        if reader is not None and reader.in_features == code.shape[1]:
            magnitude = magnitude * reader.weight.norm(dim=0)
        penalty = magnitude.sum(dim=1).mean()
        return error + (2.0 * self.sparsity / x.shape[1]) * penalty

    def extra_repr(self):
        return f"sparsity={self.sparsity}"
