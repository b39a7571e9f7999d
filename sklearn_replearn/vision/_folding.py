"""Inference-only rewrites of a frozen network: batch norms folded into convolutions.

In evaluation mode a ``BatchNorm`` after a convolution is a fixed per-channel
affine map, so it can be folded into the convolution's weights and bias: the
network computes the same function (up to float rounding) with one pass over
each feature map fewer, a visible share of a ResNet's time on a CPU.
"""

import copy
import warnings
from collections import Counter

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# (convolution, batch norm) types that fold into one convolution.
_PAIRS = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Conv3d: nn.BatchNorm3d,
}

__all__ = ["fold_batch_norms"]


def fold_batch_norms(module, example=None):
    """A copy of ``module`` with each eval-mode conv -> batch norm pair folded.

    A pair is folded only when the graph makes it safe: the convolution module
    is called once (not shared by several call sites), its output feeds only
    the batch norm, and the batch norm uses running statistics. With
    ``example``, the folded network must also give the same output as
    ``module`` on it, else ``module`` is returned: symbolic tracing can
    silently specialise Python control flow of a user module.

    Parameters
    ----------
    module : torch.nn.Module
        A network in evaluation mode. It is not modified.
    example : torch.Tensor, default=None
        An input to check the folded network on (one random image is enough).

    Returns
    -------
    torch.nn.Module
        A ``torch.fx.GraphModule`` computing the same outputs, or ``module``
        itself when there is nothing to fold, when it cannot be traced
        symbolically (data-dependent control flow in a user module, for
        example), or when the check on ``example`` fails: folding is an
        optimisation, never a requirement.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    >>> net = net.eval()
    >>> x = torch.randn(2, 3, 8, 8)
    >>> folded = fold_batch_norms(net, example=x)
    >>> any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    False
    >>> torch.allclose(folded(x), net(x), atol=1e-5)
    True
    """
    children = list(module.modules())
    if any(child.training for child in children) or not any(
            isinstance(child, nn.modules.batchnorm._BatchNorm) for child in children):
        return module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fx's notes on untraceable leaves
            # (A deep copy of torchvision's feature extractor comes back in
            # training mode: evaluation mode is restored before tracing.)
            traced = fx.symbolic_trace(copy.deepcopy(module).eval())
    except Exception:  # noqa: BLE001 -- any tracing failure means: run unfolded
        return module
    if not _fold_pairs(traced):
        return module
    folded = traced.eval()
    if example is not None and not _same_output(module, folded, example):
        return module
    return folded


def _fold_pairs(traced):
    """Fold the safe conv -> batch norm pairs of ``traced`` in place; how many."""
    modules = dict(traced.named_modules())
    calls = Counter(node.target for node in traced.graph.nodes
                    if node.op == "call_module")
    n_folded = 0
    for node in list(traced.graph.nodes):
        norm = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if node.args else None
        if norm is None or not isinstance(source, fx.Node) or (
                source.op != "call_module"):
            continue
        conv = modules[source.target]
        if (_PAIRS.get(type(conv)) is not type(norm)
                or not norm.track_running_stats or norm.running_mean is None
                or len(source.users) != 1
                or calls[source.target] != 1 or calls[node.target] != 1):
            continue
        parent, _, name = source.target.rpartition(".")
        setattr(traced.get_submodule(parent), name, fuse_conv_bn_eval(conv, norm))
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
        n_folded += 1
    if n_folded:
        traced.graph.lint()
        traced.delete_all_unused_submodules()  # the folded batch norms
        traced.recompile()
    return n_folded


def _same_output(module, folded, example):
    """Whether ``folded`` matches ``module`` on ``example``.

    The tolerance is relative to the largest output: convolutions in TF32 (the
    default for cuDNN on recent GPUs) round to ~1e-3 of it, while a wrongly
    folded network is off by about the output's own size.
    """
    try:
        with torch.inference_mode():
            expected, output = module(example), folded(example)
    except Exception:  # noqa: BLE001 -- a folded network that fails is not used
        return False
    if not (isinstance(expected, torch.Tensor) and isinstance(output, torch.Tensor)
            and expected.shape == output.shape):
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(output, expected, rtol=0.0,
                               atol=5e-3 * max(scale, 1e-6)))
