"""The fitted state of ``PretrainedCNNFeatures`` as plain data, for skops.

skops (scikit-learn's secure format) stores only types it knows or the user
trusts; a torch module is neither (``skops.io.dumps`` fails on its tensors, and
trusting torch's types would let a tampered file run code). So the state given
to skops holds no torch object: the backbone's weights are numpy arrays of its
``state_dict``, with the plain-data spec from which its backbone source
(``backbones``) rebuilds the same architecture (for torchvision: its name and
constructor arguments). Loading asks that source to build it with random
weights and loads the arrays into it: nothing is unpickled.

A backbone whose source cannot rebuild it (the user's own module) cannot be
stored this way: :func:`plain_state` says so at dump time. Pickle and joblib
keep the module itself (``PretrainedCNNFeatures.__reduce_ex__``).
"""

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from .backbones import get_backbone_source

__all__ = ["plain_state", "restore_state"]

# Keys of the skops state standing for ``model_``.
_SPEC, _ARRAYS, _DTYPES = "_rebuild_spec", "_model_arrays", "_model_dtypes"


def _skops_refusal(what):
    return TypeError(
        f"PretrainedCNNFeatures with {what} cannot be saved with skops without "
        "trusting torch's types (and those of your module), which would let a "
        "tampered file run code on loading. Use a torchvision backbone name "
        "(weights as a file path or name), whose fitted weights skops stores as "
        "plain arrays, or save with pickle/joblib and load only files you trust."
    )


def plain_state(state):
    """The pickle state of the estimator, with every torch object replaced.

    Parameters
    ----------
    state : dict
        The estimator's pickle state (``model_`` a module on the CPU).

    Returns
    -------
    dict
        The same state holding only parameters, numpy arrays, numbers, strings
        and containers of them.

    Raises
    ------
    TypeError
        When a parameter is a torch object (a module backbone, a state dict
        of tensors as ``weights``) or the fitted backbone cannot be rebuilt.
    """
    state = dict(state)
    if isinstance(state.get("backbone"), nn.Module):
        raise _skops_refusal(f"backbone={type(state['backbone']).__name__}(...) "
                             "(your own torch module)")
    if isinstance(state.get("weights"), Mapping):
        raise _skops_refusal("weights given as a state dict of tensors")
    if isinstance(state.get("weights"), os.PathLike):
        state["weights"] = os.fspath(state["weights"])  # the same file, as a str
    if isinstance(state.get("device"), torch.device):
        state["device"] = str(state["device"])
    if "preprocessing_" in state:
        preprocessing = dict(state["preprocessing_"])
        preprocessing["interpolation"] = InterpolationMode(
            preprocessing["interpolation"]).value
        state["preprocessing_"] = preprocessing
    model = state.pop("model_", None)
    if model is not None:
        spec = state.get(_SPEC)
        if spec is None:
            raise _skops_refusal(f"a backbone its source cannot rebuild "
                                 f"({state.get('backbone')!r})")
        arrays, dtypes = {}, {}
        for name, tensor in model.state_dict().items():
            tensor = tensor.detach().to("cpu")
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
                dtypes[name] = "bfloat16"
                tensor = tensor.to(torch.float32)  # exact; cast back on loading
            arrays[name] = tensor.numpy().copy()
        state[_ARRAYS], state[_DTYPES] = arrays, dtypes
    return state


def restore_state(state):
    """Undo :func:`plain_state` (a pickle state passes through unchanged)."""
    state = dict(state)
    if "preprocessing_" in state and isinstance(
            state["preprocessing_"].get("interpolation"), str):
        preprocessing = dict(state["preprocessing_"])
        preprocessing["interpolation"] = InterpolationMode(
            preprocessing["interpolation"])
        state["preprocessing_"] = preprocessing
    if _ARRAYS in state:
        state["model_"] = _rebuild(state[_SPEC], state.get("head_"),
                                   state.pop(_ARRAYS), state.pop(_DTYPES, {}))
    return state


def _tampered(reason):
    return ValueError(
        f"Cannot load this PretrainedCNNFeatures: {reason}. The file was altered, "
        "or written by another version of sklearn-replearn or torchvision; load "
        "only files you trust, written with the versions installed here, or "
        "refit the estimator."
    )


def _rebuild(spec, head, arrays, dtypes):
    """The fitted backbone: rebuilt by its source, head dropped, the arrays
    loaded."""
    # Every failure below is an altered (or foreign) file: refused in our
    # words, not the source library's ("Unknown model") or torch's.
    spec = spec if isinstance(spec, dict) else {}
    name = spec.get("name")
    try:
        source = get_backbone_source(spec.get("source"))
    except (TypeError, ValueError) as exc:
        raise _tampered(f"it names the backbone source {spec.get('source')!r} "
                        f"({exc})") from None
    # Building initialises random weights (overwritten below): keep the
    # caller's global RNG as it was.
    try:
        with torch.random.fork_rng(devices=[]):
            model = source.rebuild(spec)
        if head is not None:
            model.set_submodule(head, nn.Identity())
    except Exception as exc:
        raise _tampered(f"{exc}" if isinstance(exc, ValueError) else
                        f"the backbone {name!r} cannot be rebuilt with head "
                        f"{head!r} ({type(exc).__name__}: {exc})") from exc
    weights = {}
    for key, array in arrays.items():
        tensor = torch.from_numpy(np.array(array, copy=True))
        if dtypes.get(key) == "bfloat16":
            tensor = tensor.to(torch.bfloat16)
        weights[key] = tensor
    # assign=True keeps the stored dtypes (a bfloat16 model stays one).
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _tampered(f"the weights stored for the backbone {name!r} do not fit "
                        f"it ({exc})") from exc
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval().to(memory_format=torch.channels_last)
