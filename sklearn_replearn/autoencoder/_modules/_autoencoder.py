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
    >>> from sklearn_replearn.autoencoder._modules import Autoencoder, make_mlp
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
        return self.decoder(self.encoder(self._corrupted(x)))

    def _corrupted(self, x):
        # (A module call less per batch when not denoising.)
        return self.corrupt(x) if self.corrupt.p else x

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        raw = self.decoder(code)
        return torch.sigmoid(raw) if self.output == "sigmoid" else raw

    def reconstruct(self, x):
        return self.decode(self.encode(x))


def _decoder_weights(decoder):
    """The decoder's first layer if it is an ``nn.Linear``, and the later weights.

    Returns ``(reader, later)``: ``reader`` is the first parameterised layer
    when it is a Linear (its column ``j`` is what code unit ``j`` writes into
    the decoder), else None; ``later`` lists the weight matrices and kernels
    (parameters of two or more dimensions) of the layers after it.
    """
    layers = [layer for layer in decoder.modules()
              if next(layer.parameters(recurse=False), None) is not None]
    if not layers or not isinstance(layers[0], nn.Linear):
        return None, []
    later = [parameter for layer in layers[1:]
             for parameter in layer.parameters(recurse=False)
             if parameter.ndim >= 2]
    return layers[0], later


class SparseAutoencoder(Autoencoder):
    """An autoencoder trained with an L1 penalty on its code.

    ``loss`` is the reconstruction error (mean squared error, or binary
    cross-entropy on logits for ``output="sigmoid"``) plus

    ``2 * sparsity / n_features * mean over the batch of sum_j |code_j| w_j``

    with ``w_j = ||d_j|| * g`` (:meth:`code_weights`): ``d_j`` is the column
    of the decoder's first linear layer that code unit ``j`` writes to, and
    ``g`` the product of the Frobenius norms of the decoder's later weight
    matrices and kernels relative to their product at construction (1 for a
    linear decoder). Weighting each unit so makes
    the penalty blind to rescaling: shrinking a code unit while growing its
    column, or shrinking one decoder layer while growing the next (through a
    ReLU, leaky ReLU or identity), changes nothing, so the penalty cannot be
    dodged that way. For a linear decoder the mean-squared loss is then
    ``2 / n_features`` times the sparse coding objective
    ``0.5 * ||x - x_hat||^2 + sparsity * sum_j |code_j|`` with unit-norm
    atoms, so ``sparsity`` plays the part of ``DictionaryLearner``'s
    ``alpha``. A decoder whose first parameterised layer is not an
    ``nn.Linear`` gets the plain L1 penalty.

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
    >>> from sklearn_replearn.autoencoder._modules import make_mlp
    >>> from sklearn_replearn.autoencoder._modules._autoencoder import SparseAutoencoder
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
        # Plain lists: the layers are already registered inside ``decoder``.
        reader, later = _decoder_weights(decoder)
        self._code_reader, self._later_weights = [reader], later
        # Saved with the weights, so that a reloaded model's loss is the same.
        self.register_buffer("later_weights_norm", self._later_norm().detach())

    def forward(self, x):
        code = self.encoder(self._corrupted(x))
        return self.decoder(code), code

    def _later_norm(self):
        """Product of the Frobenius norms of the decoder's later weights."""
        norm = torch.ones(())
        for weight in self._later_weights:
            norm = norm.to(weight) * weight.norm()
        return norm

    def code_weights(self):
        """The weight of each code unit in the penalty, shape (n_components,)."""
        reader = self._code_reader[0]
        if reader is None:
            return None
        columns = reader.weight.norm(dim=0)
        if not self._later_weights:  # a linear decoder
            return columns
        return columns * (self._later_norm() / self.later_weights_norm)

    def loss(self, output, x):
        """Reconstruction error plus the weighted L1 penalty on the code."""
        raw, code = output
        if self.output == "sigmoid":
            error = F.binary_cross_entropy_with_logits(raw, x)
        else:
            error = F.mse_loss(raw, x)
        magnitude = code.abs()
        weights = self.code_weights()
        if weights is not None and weights.shape[0] == code.shape[1]:
            magnitude = magnitude * weights
        penalty = magnitude.sum(dim=1).mean()
        return error + (2.0 * self.sparsity / x.shape[1]) * penalty

    def extra_repr(self):
        return f"sparsity={self.sparsity}"
