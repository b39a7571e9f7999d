"""Building blocks: activations, MLP stacks, masking noise."""

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MaskingNoise", "make_activation", "make_mlp"]

# scikit-learn's MLP names first, then common torch ones.
ACTIVATIONS = {
    "identity": nn.Identity,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def make_activation(name):
    """Return a fresh activation module for an activation name."""
    return ACTIVATIONS[name]()


def make_mlp(sizes, activation, dropout=0.0):
    """A stack of ``Linear`` layers with ``activation`` between them.

    The last layer is linear (no activation): autoencoder bottlenecks and output
    layers stay linear, since a ReLU code layer leaves code units dead.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, e.g. ``(64, 128, 8)``.
    activation : str
        A key of :data:`ACTIVATIONS`.
    dropout : float in [0, 1), default=0.0
        Probability of ``nn.Dropout`` after each hidden activation (none on
        the input or the output); 0 adds no dropout layer.

    Examples
    --------
    >>> from sklearn_replearn.autoencoder._modules import make_mlp
    >>> make_mlp((4, 3, 2), "relu")
    Sequential(
      (0): Linear(in_features=4, out_features=3, bias=True)
      (1): ReLU()
      (2): Linear(in_features=3, out_features=2, bias=True)
    )
    """
    layers = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if index > 0:
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class MaskingNoise(nn.Module):
    """Zero each input value with probability ``p`` while training (denoising AE).

    Unlike ``nn.Dropout`` the kept values are not rescaled: the network learns
    to fill in missing inputs (Vincent et al., 2008). Does nothing in eval mode.
    """

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep

    def extra_repr(self):
        return f"p={self.p}"
