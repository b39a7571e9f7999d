"""Weights from files and state dicts, read without running code from them.

Files are read with ``torch.load(weights_only=True)`` or safetensors; a state
dict (or a checkpoint holding one) is loaded strictly, with a clear error when
it does not fit the architecture. Every source uses these for weights given as
a file or a mapping.
"""

import io
import os
import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping

import torch

from ..._utils import import_optional

__all__ = ["load_state_dict", "safe_load", "weights_kind"]

_WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
# torchvision's DenseNet checkpoints use the old key names "norm.1", "conv.2", ...
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean"
    r"|running_var))$"
)


def weights_kind(weights):
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
        if not _is_pickle(path):
            raise _not_a_torch_file(path, None) from exc
        raise ValueError(
            f"Will not load {path!r}: it is a pickle holding Python objects beyond "
            "tensors, and unpickling it could run arbitrary code "
            "(torch.load(weights_only=True) rejected it). Save only the state dict "
            "(torch.save(model.state_dict(), path)) or use a .safetensors file."
        ) from exc
    except Exception as exc:
        raise _not_a_torch_file(path, exc) from exc


def _is_pickle(path):
    """Whether ``path`` is a torch archive or a well-formed pickle.

    torch's safe unpickler rejects objects and corrupt bytes with the same
    error; a corrupt file must not be reported as a pickle holding code.
    """
    if zipfile.is_zipfile(path):
        return True  # torch.save's archive: it is its pickle that was refused
    try:
        with open(path, "rb") as handle:
            # Disassembles without unpickling: checks opcodes, stack and memo.
            pickletools.dis(handle, out=io.StringIO())
    except Exception:  # noqa: BLE001 -- any failure means not a pickle
        return False
    return True


def _not_a_torch_file(path, exc):
    with open(path, "rb") as handle:
        head = handle.read(16)
    details = [f"{type(exc).__name__}: {exc}".rstrip(": ")] if exc is not None else []
    details.append(f"it starts with {head!r}" if head else "it is empty")
    return ValueError(
        f"cannot read {path!r} as a torch state dict: the file is corrupt or not a "
        f"torch.save file ({'; '.join(details)}). Pass a file written by "
        "torch.save(model.state_dict(), path), or a .safetensors file."
    )


def load_state_dict(model, weights):
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
