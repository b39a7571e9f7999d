"""Optimizers the engine accepts, and torch's fused kernels where they exist."""

import functools
import inspect

import torch

__all__ = ["OPTIMIZERS", "check_optimizer", "fused_optimizer_kwargs"]

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}

# Optimizers whose step needs no closure (LBFGS, for one, does).
CLOSURE_FREE = frozenset(OPTIMIZERS.values())

# Optimizers with a fused implementation: one kernel updates all parameters,
# instead of about eight small operations per parameter tensor. The updates
# are the same up to float rounding, and a small MLP trains faster on a CPU,
# where per-operation dispatch dominates. Which devices have fused
# kernels depends on the torch version (the CPU since torch 2.4), so support
# is probed once per optimizer and device (see _fused_works).
_FUSED = frozenset({torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD})

# Optimizers whose step needs a closure that re-evaluates the loss: the
# engine's minibatch loop steps without one.
_NEEDS_CLOSURE = frozenset({torch.optim.LBFGS})


def check_optimizer(optimizer):
    """The optimizer class for ``optimizer`` (a name or a class), or raise.

    Raises
    ------
    ValueError
        If ``optimizer`` is a name that is not in :data:`OPTIMIZERS`.
    TypeError
        If it is not a ``torch.optim.Optimizer`` subclass, or one whose step
        needs a closure (L-BFGS).

    Examples
    --------
    >>> check_optimizer("adam")
    <class 'torch.optim.adam.Adam'>
    >>> check_optimizer(dict)
    Traceback (most recent call last):
    ...
    TypeError: optimizer must be one of 'adam', ... got dict.
    """
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={optimizer!r} is not a known optimizer; use one of "
                f"{', '.join(map(repr, sorted(OPTIMIZERS)))} or a torch.optim."
                "Optimizer subclass."
            )
        return OPTIMIZERS[optimizer]
    names = ", ".join(map(repr, sorted(OPTIMIZERS)))
    if not (inspect.isclass(optimizer)
            and issubclass(optimizer, torch.optim.Optimizer)):
        shown = optimizer.__name__ if inspect.isclass(optimizer) else repr(optimizer)
        raise TypeError(
            f"optimizer must be one of {names} or a torch.optim.Optimizer "
            "subclass that steps without a closure (e.g. torch.optim.NAdam); "
            f"got {shown}."
        )
    if any(issubclass(optimizer, needs) for needs in _NEEDS_CLOSURE):
        raise TypeError(
            f"optimizer={optimizer.__name__} needs a closure that re-evaluates "
            "the loss at each step, which minibatch training does not provide; "
            f"use one of {names} or another first-order optimizer."
        )
    return optimizer


def fused_optimizer_kwargs(optimizer_class, device, prefix=""):
    """``{prefix + "fused": True}`` where ``optimizer_class`` has a fused kernel
    for ``device`` in this torch; ``{}`` otherwise.

    ``prefix`` is e.g. ``"optimizer__"`` for skorch's routed parameters.

    Examples
    --------
    >>> import torch
    >>> fused_optimizer_kwargs(torch.optim.Adam, "cpu")  # torch >= 2.4
    {'fused': True}
    >>> fused_optimizer_kwargs(torch.optim.RMSprop, "cpu")
    {}
    """
    if optimizer_class in _FUSED and _fused_works(optimizer_class,
                                                  str(torch.device(device))):
        return {prefix + "fused": True}
    return {}


@functools.cache
def _fused_works(optimizer_class, device):
    """Whether a fused ``optimizer_class`` builds and steps on ``device``."""
    try:
        parameter = torch.zeros(1, device=device, requires_grad=True)
        optimizer = optimizer_class([parameter], lr=1e-3, fused=True)
        parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
    except (RuntimeError, TypeError, ValueError, AssertionError):
        # (AssertionError: "Torch not compiled with CUDA enabled".)
        return False
    return True
