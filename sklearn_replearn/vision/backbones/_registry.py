"""Backbones: build a torchvision model or copy the user's, and load its weights.

Weights come from torch's hub cache (downloaded on first use with a checked
hash, ``_download``), a state dict file or a state dict. Files are read
without running code from them (``torch.load(weights_only=True)`` or
safetensors), and torchvision's named weights also give the preprocessing
they were trained with.
"""

import difflib
import os
import pickle
import re
from collections.abc import Mapping
from copy import deepcopy

import torch
from torch import nn

from ...utils import import_optional, seeded
from ._download import cached_weights_file

__all__ = ["drop_classifier", "first_conv_channels", "load_backbone", "safe_load"]

_WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
# torchvision's DenseNet checkpoints use the old key names "norm.1", "conv.2", ...
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean"
    r"|running_var))$"
)


def _weights_kind(weights):
    """One of "none", "state_dict", "path" or "name" (a torchvision weights name)."""
    if weights is None:
        return "none"
    if isinstance(weights, Mapping):
        return "state_dict"
    if isinstance(weights, os.PathLike):
        return "path"
    if (os.sep in weights or "/" in weights or os.path.isfile(weights)
            or weights.lower().endswith(_WEIGHT_FILE_SUFFIXES)):
        return "path"
    return "name"


def _classification_models():
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def load_backbone(backbone, weights, random_state, *, download=True, verbose=0):
    """Build the backbone with its weights.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        A torchvision classification model name, or a module (copied).
    weights : str, path-like, dict or None
        As ``PretrainedCNNFeatures``'s ``weights``.
    random_state : int, RandomState instance or None
        Seeds the random initialisation of a named backbone.
    download : bool, default=True
        Download missing named torchvision weights (hash checked).
    verbose : int, default=0
        A progress bar over the download when > 0.

    Returns
    -------
    model : torch.nn.Module
    preset : dict or None
        The named weights' preprocessing (resize, crop, mean, std,
        interpolation, antialias), or None when the weights do not say.
    """
    if isinstance(backbone, str) and backbone.startswith(("timm:", "hf:")):
        return _load_external(backbone, weights, random_state)
    kind = _weights_kind(weights)
    if isinstance(backbone, nn.Module):
        model = deepcopy(backbone)
        if kind == "name":
            raise ValueError(
                f"weights={weights!r} looks like a torchvision weights name, but "
                "backbone is your own module; pass a path to a state dict file, a "
                "state dict, or None to keep the module's current weights."
            )
        if kind != "none":
            _load_state_dict(model, weights)
        return model, _module_preset(model)

    import torchvision

    models = _classification_models()
    if backbone not in models:
        close = difflib.get_close_matches(backbone, models, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"backbone={backbone!r} is not a torchvision classification model.{hint} "
            "Valid names: torchvision.models.list_models(module=torchvision.models) "
            f"({len(models)} models, e.g. 'resnet18', 'resnet50', 'vgg16', "
            "'densenet121'); or pass your own torch.nn.Module."
        )
    if kind == "name":
        enum = torchvision.models.get_model_weights(backbone)
        try:
            resolved = enum.verify(weights)
        except KeyError:
            names = ", ".join(repr(name) for name in enum.__members__)
            raise ValueError(
                f"weights={weights!r} is not a weights name of {backbone!r}; valid "
                f"names: {names}. Or pass a path to a state dict file, or None."
            ) from None
        cache_file, downloaded = cached_weights_file(
            resolved, backbone, weights, download=download, verbose=verbose)
        # Refuse unsafe pickles before torchvision (which does not pass
        # weights_only=True) reads the same cached file.
        try:
            safe_load(cache_file)
        except ValueError as exc:
            if not downloaded:
                raise
            os.remove(cache_file)  # a refused download leaves nothing behind
            raise ValueError(
                f"The file downloaded from {resolved.url} was refused and removed "
                f"from the cache: {exc}") from exc
        model = torchvision.models.get_model(backbone, weights=resolved)
        return model, _preset_from_weights(resolved)
    with seeded(random_state):
        model = torchvision.models.get_model(backbone, weights=None)
    if kind != "none":
        _load_state_dict(model, weights)
    return model, None


def _load_external(backbone, weights, random_state):
    """A ``"timm:<name>"`` or ``"hf:<repo or folder>"`` backbone (optional extras)."""
    prefix, _, name = backbone.partition(":")
    if not name:
        raise ValueError(f"backbone={backbone!r} names no model after {prefix!r}.")
    if prefix == "timm":
        from ._timm import load_timm as load
    else:
        from ._huggingface import load_huggingface as load
    return load(name, weights, random_state, _load_state_dict)


def _is_timm_model(model):
    return hasattr(model, "reset_classifier") and hasattr(model, "pretrained_cfg")


def _module_preset(model):
    """A timm model instance keeps timm's preprocessing; other modules have none."""
    if _is_timm_model(model):
        from ._timm import timm_preset

        return timm_preset(model)
    return None


def drop_classifier(model, pooling):
    """Drop ``model``'s classifier for its penultimate features; its name or None.

    timm models reset theirs (``reset_classifier``, pooling as ``pooling``);
    a Hugging Face wrapper has none; any other model loses its last
    ``nn.Linear``.
    """
    if getattr(model, "has_classifier", True) is False:
        return None
    if _is_timm_model(model):
        from ._timm import timm_head

        return timm_head(model, pooling)
    from .._layers import drop_last_linear

    return drop_last_linear(model)


def _preset_from_weights(resolved):
    transforms = resolved.transforms()
    try:
        return {
            "resize_size": int(transforms.resize_size[0]),
            "crop_size": int(transforms.crop_size[0]),
            "mean": tuple(float(v) for v in transforms.mean),
            "std": tuple(float(v) for v in transforms.std),
            "interpolation": transforms.interpolation,
            "antialias": bool(transforms.antialias),
        }
    except AttributeError:  # pragma: no cover - all classification weights have them
        return None


def safe_load(path):
    """Load a state dict file without running code from it."""
    path = os.fspath(path)
    if path.lower().endswith(".safetensors"):
        safetensors = import_optional(
            "safetensors.torch", feature=f"Reading the weights file {path!r}",
            extra="safetensors", package="safetensors")
        try:
            return safetensors.load_file(path, device="cpu")
        except Exception as exc:
            raise ValueError(f"cannot read the safetensors file {path!r}: {exc}") \
                from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"Refused to load {path!r}: it is a pickle holding Python objects other "
            "than tensors, and unpickling it could run arbitrary code "
            "(torch.load(weights_only=True) rejected it). Save only the state dict "
            "(torch.save(model.state_dict(), path)) or use a .safetensors file."
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"cannot read {path!r} as a torch state dict ({type(exc).__name__}: "
            f"{exc}). Pass a file written by torch.save(model.state_dict(), path)."
        ) from exc


def _load_state_dict(model, weights):
    source = f"weights={os.fspath(weights)!r}" if not isinstance(weights, Mapping) \
        else "the state dict passed as weights"
    if isinstance(weights, Mapping):
        state = weights
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(
                f"weights={path!r} is not an existing file (working directory "
                f"{os.getcwd()!r}); pass a path to a .pth/.pt/.safetensors state "
                "dict, a torchvision weights name, or None."
            )
        state = safe_load(path)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(
            f"{source} is not a state dict (a mapping of names to tensors); save one "
            "with torch.save(model.state_dict(), path)."
        )
    state = {_DENSENET_OLD_KEY.sub(r"\1\2", key): value for key, value in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{source} does not fit the backbone {type(model).__name__}: {exc}. Pass "
            "weights saved from the same architecture (and number of classes)."
        ) from exc


def first_conv_channels(model):
    """Input channels of the first ``nn.Conv2d`` of ``model``, or None."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None
