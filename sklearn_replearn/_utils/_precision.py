"""Reduced precision where the hardware computes it natively.

Inference (``PretrainedCNNFeatures(autocast=True)``) runs the backbone under
``torch.autocast``: float16 on CUDA (tensor cores), bfloat16 on a CPU whose
instruction set computes it natively (AVX512-BF16 or AMX-BF16, through
oneDNN), and nothing elsewhere: on other CPUs bfloat16 is emulated in float32
and is slower than float32 itself (and on MPS autocast's coverage differs by
torch version), so float32 is kept.

Training (``AutoencoderTransformer(autocast=True)`` and the VAE) runs the
forward pass in bfloat16 on the same CPUs and on CUDA devices that support
it, with float32 weights, gradients and loss. bfloat16 keeps float32's
exponent range, so no loss scaling is needed (float16 training would need
it, and is not used).
"""

import functools
import os
import sys
from contextlib import nullcontext

import torch

__all__ = [
    "autocast_dtype",
    "cpu_has_native_bfloat16",
    "inference_autocast",
    "training_autocast_dtype",
]

# /proc/cpuinfo flags of the instructions that compute bfloat16 dot products.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Forces the detection either way ("0" or "1"), e.g. to compare float32 and
# bfloat16 on one machine, or to keep float32 where the detection is wrong.
_ENVIRONMENT_OVERRIDE = "SKLEARN_REPLEARN_CPU_BF16"


@functools.cache
def _cpu_flags():
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty elsewhere."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bfloat16():
    """Whether this CPU runs bfloat16 convolutions and matmuls natively.

    True when oneDNN (``torch.backends.mkldnn``) is available and the CPU has
    AVX512-BF16 or AMX-BF16; the environment variable
    ``SKLEARN_REPLEARN_CPU_BF16=0`` (or ``1``) overrides the detection.

    Returns
    -------
    bool

    Examples
    --------
    >>> isinstance(cpu_has_native_bfloat16(), bool)
    True
    """
    forced = os.environ.get(_ENVIRONMENT_OVERRIDE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return bool(torch.backends.mkldnn.is_available() and _cpu_flags() & _BF16_FLAGS)


def autocast_dtype(device, enabled):
    """The dtype inference runs in under ``autocast=enabled`` on ``device``.

    Parameters
    ----------
    device : torch.device
    enabled : bool
        The estimator's ``autocast`` parameter.

    Returns
    -------
    torch.dtype or None
        ``torch.float16`` on CUDA, ``torch.bfloat16`` on a CPU with native
        bfloat16, None (float32) otherwise or when not ``enabled``.

    Examples
    --------
    >>> autocast_dtype(torch.device("cpu"), False) is None
    True
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


def inference_autocast(device, enabled):
    """``torch.autocast`` in :func:`autocast_dtype`'s dtype, or a null context."""
    dtype = autocast_dtype(device, enabled)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def training_autocast_dtype(device, enabled):
    """The dtype training's forward passes run in under ``autocast=enabled``.

    Parameters
    ----------
    device : torch.device
    enabled : bool
        The estimator's ``autocast`` parameter.

    Returns
    -------
    torch.dtype or None
        ``torch.bfloat16`` on a CPU with native bfloat16 or on a CUDA device
        that supports it; None (float32) otherwise or when not ``enabled``.

    Examples
    --------
    >>> training_autocast_dtype(torch.device("cpu"), False) is None
    True
    >>> training_autocast_dtype(torch.device("mps"), True) is None
    True
    """
    if not enabled:
        return None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None
