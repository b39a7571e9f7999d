"""The inference module of a fitted backbone, built once and reused.

Building it cuts the backbone at the layer, folds its batch norms (checked on
a random image) and, when compiling pays (``_compile.should_compile``),
compiles it with frozen weights: too slow to repeat at every ``transform``,
so both are kept in a dict per (layer, device) and rebuilt only when the
backbone's weights or layers change. Under ``compile="auto"`` a compiled
module is dropped if it ran below ``MIN_SPEEDUP`` times the eager speed.
"""

import torch

from .._utils._precision import autocast_dtype, inference_autocast
from ._compile import MIN_SPEEDUP, CompiledOrEager, record_no_gain, should_compile
from ._folding import fold_batch_norms
from ._layers import cut_at

__all__ = ["cached_feature_module"]


def cached_feature_module(cache, model, *, layer, device, compile, preprocess,
                          n_images=None, autocast=False, batch_size=1,
                          family=None):
    """The module computing ``layer``'s output of ``model`` on ``device``.

    Batch norms are folded into the convolutions before them (in a copy:
    ``model`` keeps its own layers for plotting, pickling and tuning; folding
    is checked on a random image), and the result is compiled with frozen
    weights when ``compile`` says so for ``n_images`` images
    (``_compile.should_compile``; once compiled, always reused). Under
    ``"auto"``, the new compiled module is first timed against the eager one
    on a batch of ``batch_size`` random images: if it runs below
    ``MIN_SPEEDUP`` (0.95) times the eager speed, the eager module is
    returned, and ``"auto"`` stays eager for this ``family``, image size,
    batch size, device type and dtype for the rest of the process.
    The cache is rebuilt when ``model`` moves to another device, when a
    weight or buffer changes in place (``load_state_dict``, an in-place
    operation on a parameter) or is replaced, and when a layer is replaced.
    Edits through ``parameter.data`` are not tracked by torch: after those,
    empty the cache.

    Parameters
    ----------
    cache : dict
        The modules built so far (updated in place).
    model : torch.nn.Module
        The backbone, in evaluation mode; moved to ``device`` if needed.
    layer : str or None
        The graph node whose output is wanted; None: the model's output.
    device : torch.device
    compile : bool or "auto"
        The estimator's ``compile`` parameter.
    preprocess : Preprocessing
        Gives the size of the random image that folding is checked on.
    n_images : int, default=None
        Images the module is about to run on (counted towards ``"auto"``'s
        break-even); None: a probe, always eager.
    autocast : bool, default=False
        The estimator's ``autocast`` parameter (the break-even depends on
        the dtype it picks).
    batch_size : int, default=1
        Images per batch of the transform (the shape the compiled module is
        timed on).
    family : hashable, default=None
        What a compiled module's loss to the eager one is remembered under
        (``_compile.record_no_gain``), with the image size and
        ``batch_size``: the backbone and the layer; None: ``model``'s class
        name.

    Returns
    -------
    torch.nn.Module or CompiledOrEager
        Called on batches of ``(N, C, H, W)`` images.
    """
    if not _on_device(model, device):
        # Outside inference mode (transform runs in it): the moved weights
        # must stay ordinary tensors, which keep version counters.
        with torch.inference_mode(False):
            model.to(device)
    fingerprint = _weights_fingerprint(model)
    if cache.get("fingerprint") != fingerprint:
        cache.clear()
        cache["fingerprint"] = fingerprint
    key = (layer, str(device))
    module = cache.get(key)
    if module is None:
        module = fold_batch_norms(cut_at(model, layer).eval(),
                                  example=preprocess.example_batch(device, random=True))
        cache[key] = module
    if n_images is None:
        return module
    compiled = cache.get((*key, "compiled"))
    n_done = cache.get((*key, "eager images"), 0)
    dtype = autocast_dtype(device, autocast)
    # The verdict of a timing holds for the shape it was timed on.
    family = (type(model).__qualname__ if family is None else family,
              preprocess.output_size, batch_size)
    if not should_compile(compile, device, preprocess.output_size, n_images=n_images,
                          n_done=n_done, compiled=compiled is not None,
                          dtype=dtype, family=family):
        cache[(*key, "eager images")] = n_done + n_images
        return module
    if compiled is None:
        compiled = CompiledOrEager(module)
        if compile == "auto" and not _compiled_is_kept(compiled, preprocess, device,
                                                  autocast, batch_size):
            record_no_gain(device, dtype, family)
            cache[(*key, "eager images")] = n_done + n_images
            return module
        cache[(*key, "compiled")] = compiled
    return compiled


def _compiled_is_kept(compiled, preprocess, device, autocast, batch_size):
    """Whether ``compiled`` (a new ``CompiledOrEager``) runs a batch of
    ``batch_size`` random images at least ``MIN_SPEEDUP`` times as fast
    compiled as eagerly."""
    with torch.inference_mode():  # as the transform's batches are made
        image = preprocess.example_batch(device, random=True)
        batch = image.expand(batch_size, *image.shape[1:]).contiguous(
            memory_format=torch.channels_last)
    speedup = compiled.speedup(batch, inference_autocast(device, autocast))
    return speedup >= MIN_SPEEDUP


def _on_device(model, device):
    """Whether ``model``'s weights are on ``device`` ("cuda" matches "cuda:0")."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return True
    if parameter.device.type != device.type:
        return False
    # One CPU ("cpu:0" is "cpu"); an accelerator without an index means any.
    return (device.type == "cpu" or device.index is None
            or parameter.device.index == device.index)


def _weights_fingerprint(model):
    """Changes when a weight or buffer of ``model`` is replaced, moved or edited
    in place (in-place operations bump a tensor's version counter), and when
    a layer is replaced."""
    tensors = tuple(
        (id(tensor), tensor.data_ptr(),
         None if tensor.is_inference() else tensor._version)
        for tensor in (*model.parameters(), *model.buffers()))
    return tensors, tuple(id(module) for module in model.modules())
