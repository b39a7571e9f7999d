"""Where a backbone's features are taken and how they become vectors.

The features are a graph node's output (torchvision feature extraction) or,
by default, the input of the backbone's last ``nn.Linear`` (its classifier,
replaced by ``nn.Identity``); maps of shape ``(N, C, H, W)`` are then pooled
over H and W, or flattened.
"""

import difflib

import torch
from torch import nn

__all__ = [
    "NodeOutput",
    "check_layer",
    "check_pooling_applies",
    "cut_at",
    "drop_last_linear",
    "node_names",
    "output_width",
    "pool_features",
]


class NodeOutput(nn.Module):
    """A graph node's output as a module (torchvision feature extraction).

    The extractor shares its layers (and their weights) with ``model``.
    """

    def __init__(self, model, layer):
        from torchvision.models.feature_extraction import create_feature_extractor

        super().__init__()
        self.extractor = create_feature_extractor(model, return_nodes={layer: "out"})

    def forward(self, x):
        return self.extractor(x)["out"]


def cut_at(model, layer):
    """The module computing ``layer``'s output: ``model`` itself when None."""
    return model if layer is None else NodeOutput(model, layer)


def drop_last_linear(model):
    """Replace the last ``nn.Linear`` (the classifier) by ``nn.Identity``.

    Returns its name, or None when ``model`` has none (it is left unchanged).
    """
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name]
    if not names:
        return None
    model.set_submodule(names[-1], nn.Identity())
    return names[-1]


def node_names(model):
    """The graph node names of ``model`` (torchvision's ``get_graph_node_names``)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        return get_graph_node_names(model)[1]
    except Exception as exc:
        raise ValueError(
            f"layer needs torch.fx to trace the backbone, which failed "
            f"({type(exc).__name__}: {exc}); use layer=None for the penultimate "
            "features."
        ) from exc


def check_layer(model, layer):
    """Raise a ValueError quoting the valid names when ``layer`` is not a node."""
    names = node_names(model)
    # A module name ("layer3") stands for the last node inside it.
    if layer not in names and not any(name.startswith(layer + ".") for name in names):
        close = difflib.get_close_matches(layer, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"layer={layer!r} is not a node of this backbone.{hint} Valid layers "
            "(torchvision.models.feature_extraction.get_graph_node_names(model)[1]): "
            f"{', '.join(names)}."
        )


def pool_features(output, pooling, prefix_tokens=None):
    """``(N, C, H, W)`` maps as vectors: ``"avg"``/``"mean"``/``"max"`` over H
    and W, or flattened (``pooling=None``); vector outputs are returned as
    they are. With ``prefix_tokens`` (a vision transformer's count of class
    and register tokens), ``(N, T, D)`` tokens are pooled too: ``"cls"`` takes
    the first token, ``"avg"``/``"mean"``/``"max"`` pool the patch tokens."""
    if output.ndim == 2:
        return output
    if pooling is None:
        return output.flatten(1)
    if output.ndim == 3 and prefix_tokens is not None:
        if pooling == "cls":
            return output[:, 0]
        patches = output[:, prefix_tokens:]
        return patches.amax(dim=1) if pooling == "max" else patches.mean(dim=1)
    if output.ndim == 4 and pooling != "cls":
        if pooling in ("avg", "mean"):
            return output.mean(dim=(2, 3))
        return output.amax(dim=(2, 3))
    shape = tuple(output.shape)
    if output.ndim == 4:
        raise ValueError(
            f"The features have shape {shape}: (N, C, H, W) maps, but "
            "pooling='cls' takes a vision transformer's class token, which maps "
            "do not have. Use pooling='avg', 'max' or None (the flattened maps)."
        )
    raise ValueError(
        f"The features have shape {shape}, neither (N, C, H, W) maps nor a vision "
        f"transformer's (N, T, D) tokens, which pooling={pooling!r} cannot pool; "
        "pass pooling=None for the flattened output, or another layer."
    )


def check_pooling_applies(output, pooling, layer, head=None):
    """Refuse a ``pooling`` that would leave vector features unchanged.

    Vectors (``(N, D)``: a classifier's input that the backbone pooled
    itself, or a layer such as ``"flatten"``) are taken as they are; only
    the default ``"avg"`` (or ``"mean"``) says so. Another value would be
    silently ignored. ``head`` is the name of the dropped classifier.
    """
    if output.ndim != 2 or pooling in ("avg", "mean"):
        return
    if layer is not None:
        where = f"the output of layer={layer!r} is"
    elif head is not None:
        where = (f"with layer=None the features are the input of the backbone's "
                 f"classifier ({head!r})")
    else:
        where = "with layer=None the features are the backbone's output"
    raise ValueError(
        f"pooling={pooling!r} would have no effect: {where}, already one vector "
        f"per image (shape {tuple(output.shape)}), with nothing left to pool over. "
        "Keep the default pooling='avg', which takes the vectors as they are, or "
        "pick a layer with (N, C, H, W) maps for this pooling, e.g. "
        "layer='layer4' on a ResNet (the names: "
        "torchvision.models.feature_extraction.get_graph_node_names(model)[1])."
    )


def output_width(module, pool, probe):
    """Width of ``pool(module(probe))``; a failing backbone is a clear ValueError."""
    try:
        with torch.inference_mode():
            output = pool(module(probe))
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(
            f"The backbone failed on a batch of shape {tuple(probe.shape)} "
            f"(N, C, H, W) with {type(exc).__name__}: {exc}. Check that "
            "image_size and the channel count suit it."
        ) from exc
    return int(output.shape[1])
