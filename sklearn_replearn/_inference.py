"""Inference-only rewrites of a frozen network: batch norms folded into convolutions.

In evaluation mode a ``BatchNorm`` after a convolution is a fixed per-channel
affine map, so it can be folded into the convolution's weights and bias: the
network computes the same function (up to float rounding) with one pass over
each feature map fewer. On a CPU that is about 8% of a ResNet's time.
"""

import warnings

import torch
from torch.fx.experimental.optimization import fuse


def fold_batch_norms(module):
    """A copy of ``module`` with each eval-mode conv -> batch norm pair folded.

    Parameters
    ----------
    module : torch.nn.Module
        A network in evaluation mode. It is not modified.

    Returns
    -------
    torch.nn.Module
        A ``torch.fx.GraphModule`` computing the same outputs, or ``module``
        itself when it cannot be traced symbolically (data-dependent control
        flow in a user module, for example) or has no pair to fold: folding
        is an optimisation, never a requirement.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    >>> net = net.eval()
    >>> folded = fold_batch_norms(net)
    >>> any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    False
    >>> x = torch.randn(2, 3, 8, 8)
    >>> torch.allclose(folded(x), net(x), atol=1e-5)
    True
    """
    if module.training or not any(
            isinstance(child, torch.nn.modules.batchnorm._BatchNorm)
            for child in module.modules()):
        return module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fx's notes on untraceable leaves
            folded = fuse(module)
    except Exception:  # noqa: BLE001 -- any tracing failure means: run unfolded
        return module
    return folded.eval()
