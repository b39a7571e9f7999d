"""An encoder and decoder anchored on PCA: a linear path plus a refinement.

:class:`AnchoredEncoder` and :class:`AnchoredDecoder` work on data centred
by a stored per-feature mean and divided by one stored scale (the root mean
variance of the features: one number, so that the squared error still weighs
every feature as in the data). Each adds a linear path to an optional
nonlinear network (the residual form)::

    code  = W_e z + a f(z),          z = (x - mean) / scale
    x_hat = mean + scale * (W_d code + b + c g(code))

:func:`anchor_on_pca` sets ``W_e`` to the PCA components, ``W_d`` to their
transpose and the learned gates ``a`` and ``c`` to zero: the pair then
reconstructs exactly as PCA does, and training refines it from there.
"""

import numpy as np
import torch
from torch import nn

__all__ = ["AnchoredDecoder", "AnchoredEncoder", "anchor_on_pca"]


class _Standardized(nn.Module):
    """The stored centring and scale, as buffers (saved with the weights)."""

    def __init__(self, n_features):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(()))


class AnchoredEncoder(_Standardized):
    """``x -> W_e (x - mean) / scale + f((x - mean) / scale)``.

    Parameters
    ----------
    n_features, n_components : int
        Input and code widths.
    nonlinear : torch.nn.Module or None
        ``f``, mapping ``(batch, n_features)`` to ``(batch, n_components)``;
        None for a linear encoder.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.autoencoder._modules import AnchoredEncoder, make_mlp
    >>> encoder = AnchoredEncoder(6, 2, make_mlp((6, 4, 2), "relu"))
    >>> encoder(torch.zeros(3, 6)).shape
    torch.Size([3, 2])
    """

    def __init__(self, n_features, n_components, nonlinear=None):
        super().__init__(n_features)
        # Registered first: ``components_`` shows the first linear layer over
        # the inputs, the nonlinear path's filters when there is one.
        self.nonlinear = nonlinear
        self.linear = nn.Linear(n_features, n_components, bias=False)
        _add_gate(self)

    def forward(self, x):
        z = (x - self.mean) / self.scale
        code = self.linear(z)
        if self.nonlinear is not None:
            code = code + self.gate * self.nonlinear(z)
        return code


class AnchoredDecoder(_Standardized):
    """``code -> mean + scale * (W_d code + b + g(code))``.

    Parameters
    ----------
    n_components, n_features : int
        Code and output widths.
    nonlinear : torch.nn.Module or None
        ``g``, mapping ``(batch, n_components)`` to ``(batch, n_features)``;
        None for a linear decoder.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.autoencoder._modules import AnchoredDecoder
    >>> AnchoredDecoder(2, 6)(torch.zeros(3, 2)).shape
    torch.Size([3, 6])
    """

    def __init__(self, n_components, n_features, nonlinear=None):
        super().__init__(n_features)
        self.nonlinear = nonlinear
        self.linear = nn.Linear(n_components, n_features)
        _add_gate(self)

    def forward(self, code):
        out = self.linear(code)
        if self.nonlinear is not None:
            out = out + self.gate * self.nonlinear(code)
        return self.mean + self.scale * out


def _add_gate(part):
    """A learned scalar on the nonlinear path (1 until anchored, then 0)."""
    if part.nonlinear is not None:
        part.gate = nn.Parameter(torch.ones(()))


@torch.no_grad()
def anchor_on_pca(encoder, decoder, mean, scale, components):
    """Start ``encoder``/``decoder`` at PCA's reconstruction.

    Parameters
    ----------
    encoder : AnchoredEncoder
    decoder : AnchoredDecoder
    mean : ndarray of shape (n_features,)
        The data's per-feature mean.
    scale : float
        One positive scale for all features.
    components : ndarray of shape (n_found, n_features)
        Orthonormal principal axes, ``n_found <= n_components``; code units
        beyond them start at zero on the linear path.
    """
    device = encoder.linear.weight.device

    def as_tensor(values):
        # A copy: sparse PCA (svds) returns reversed views, and numpy calls a
        # one-row view with a negative stride contiguous, which torch refuses.
        return torch.as_tensor(np.array(values, dtype=np.float32, copy=True),
                               device=device)

    for part in (encoder, decoder):
        part.mean.copy_(as_tensor(mean))
        part.scale.fill_(float(scale))
    weight = torch.zeros_like(encoder.linear.weight)
    weight[:len(components)] = as_tensor(components)
    encoder.linear.weight.copy_(weight)
    decoder.linear.weight.copy_(weight.T)
    decoder.linear.bias.zero_()
    for part in (encoder, decoder):
        if part.nonlinear is not None:
            # A zero gate, not zeroed weights: Adam's first steps move every
            # weight by about learning_rate whatever its gradient, which on
            # zeroed last layers adds a random map to PCA's reconstruction;
            # through the gate they start scaled by its (small) value.
            part.gate.zero_()
