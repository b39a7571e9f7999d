"""Compiled inference: when compiling the feature module pays, and how.

A compiled module (``torch.compile`` with inductor's ``freezing``: the frozen
weights become constants, so batch norms, convolutions and their layouts are
folded and prepacked once) runs faster than the eager one, but building it
takes seconds to tens of seconds, and how much faster the compiled module
runs depends on the CPU, the model and the dtype.
``compile="auto"`` therefore compiles only when the work is large enough to
repay that time (:func:`should_compile`), then times the compiled module
against the eager one before using it (:meth:`CompiledOrEager.speedup`), and
a module that fails to compile runs eagerly instead (:class:`CompiledOrEager`).
"""

import time
import warnings

import torch

__all__ = ["MIN_SPEEDUP", "CompiledOrEager", "break_even_images",
           "record_no_gain", "should_compile"]

# Images of 224 x 224 pixels from which compiling pays for itself: the compile
# time divided by the time each image saves (`bench_pretrained.py --compiled`
# measures both; the documentation's benchmarks page gives the figures). Per device type
# and compute dtype: compiled bfloat16 gains much more over eager than
# compiled float32 does. A pair missing here has no measured break-even, and
# "auto" keeps it eager.
_BREAK_EVEN_IMAGES = {("cpu", torch.float32): 5000, ("cpu", torch.bfloat16): 1300}
_REFERENCE_PIXELS = 224 * 224

# Device types on which a compilation failed in this process: "auto" stops
# trying there (each try costs the tracing time before the failure).
_FAILED_DEVICE_TYPES = set()
# (device type, dtype, family: backbone, layer, image size, batch size) whose
# compiled module ran below MIN_SPEEDUP times the eager speed in this process:
# "auto" keeps them eager (each verdict costs a compilation).
_NO_GAIN = set()
# One warning per process about falling back to eager.
_WARNED = []
# Timed calls of each module when "auto" compares them (after one warm-up
# call each, the compiled one's compiling): the faster of two, so that one
# call slowed by another process does not decide.
_TIMED_CALLS = 2
# "auto" keeps a compiled module unless it ran below this share of the eager
# speed: its compilation is paid already, and two timed calls differ by a few
# percent from run to run (a narrow gain, as 1.02-1.06 for float32 resnet18
# on an AVX2 CPU, must not flip between runs to a slower eager process).
MIN_SPEEDUP = 0.95


def break_even_images(device, image_size, dtype=None):
    """Images of ``image_size`` from which compiling pays on ``device``.

    Parameters
    ----------
    device : torch.device
    image_size : tuple of int or None
        ``(height, width)`` of the images the network sees (None: 224 x 224).
    dtype : torch.dtype or None, default=None
        The autocast dtype (``_utils._precision.autocast_dtype``); None: float32.

    Returns
    -------
    float
        The measured break-even for 224 x 224 images, scaled by the pixels per
        image (the work per image grows with them, the compile time does not);
        ``inf`` where no break-even was measured (CUDA, MPS).

    Examples
    --------
    >>> break_even_images(torch.device("cpu"), (448, 448)) < break_even_images(
    ...     torch.device("cpu"), (224, 224))
    True
    """
    images = _BREAK_EVEN_IMAGES.get((device.type, dtype or torch.float32))
    if images is None:
        return float("inf")
    if image_size is None:  # sizes vary: counted as 224 x 224
        return float(images)
    height, width = image_size
    return images * _REFERENCE_PIXELS / max(height * width, 1)


def should_compile(compile, device, image_size, *, n_images, n_done=0,
                   compiled=False, dtype=None, family=None):
    """Whether a transform of ``n_images`` runs the compiled module.

    Parameters
    ----------
    compile : bool or "auto"
        The estimator's parameter: True and False decide alone.
    device : torch.device
    image_size : tuple of int or None
        ``(height, width)`` of the network's input.
    n_images : int
        Images of this call.
    n_done : int, default=0
        Images this estimator already ran eagerly (its earlier calls).
    compiled : bool, default=False
        Whether this estimator already holds a compiled module.
    dtype : torch.dtype or None, default=None
        The autocast dtype; None: float32.
    family : hashable, default=None
        The backbone, layer, image size and batch size: where its compiled
        module ran below ``MIN_SPEEDUP`` times the eager speed in this
        process (:func:`record_no_gain`), "auto" stays eager.

    Returns
    -------
    bool
        For ``"auto"``: True when a compiled module exists already, or when
        this call's images and those run eagerly before reach the break-even
        (:func:`break_even_images`): compiling then costs at most the time
        already spent eagerly, so the total is at most twice that of the
        better choice made in hindsight. False where a compilation failed on
        this device type in this process, or where the compiled module of
        this family, device type and dtype ran below ``MIN_SPEEDUP`` times
        the eager speed.

    Examples
    --------
    >>> cpu = torch.device("cpu")
    >>> should_compile("auto", cpu, (224, 224), n_images=10)
    False
    >>> should_compile("auto", cpu, (224, 224), n_images=10, compiled=True)
    True
    """
    if compile != "auto":
        return bool(compile)
    if compiled:
        return True
    if device.type in _FAILED_DEVICE_TYPES:
        return False
    if (device.type, dtype, family) in _NO_GAIN:
        return False
    return n_images + n_done >= break_even_images(device, image_size, dtype)


def record_no_gain(device, dtype, family):
    """Remember that ``family``'s compiled module ran below ``MIN_SPEEDUP``
    times its eager one's speed on ``device`` in ``dtype``:
    :func:`should_compile` then keeps ``"auto"`` eager there for the rest of
    the process."""
    _NO_GAIN.add((device.type, dtype, family))


def compile_frozen(module):
    """``torch.compile`` of an inference ``module`` with frozen weights.

    Inductor freezes the weights (``freezing=True``) only when the module is
    first called with gradients disabled, as under ``torch.inference_mode``;
    the option is passed to this compilation only, never set globally. The
    shape is static: every batch has ``batch_size`` images (the last one is
    padded), so one compilation serves all calls.
    """
    return torch.compile(module, dynamic=False, options={"freezing": True})


class CompiledOrEager:
    """Calls the compiled module; on any failure to compile, the eager one.

    The first call compiles (lazily, as ``torch.compile`` does). If that or a
    later compiled call raises (no C++ compiler, an operation inductor does
    not support, ...), this batch and all later ones run ``eager``, with one
    warning per process.

    Parameters
    ----------
    eager : torch.nn.Module
        The inference module.
    compiler : callable, default=compile_frozen
        Builds the compiled module from ``eager``.
    """

    def __init__(self, eager, compiler=compile_frozen):
        self.eager = eager
        self.compiled = None
        self.failed = False
        try:
            self.compiled = compiler(eager)
        except Exception as exc:  # noqa: BLE001 -- any failure falls back
            self._fall_back(exc)

    def __call__(self, batch):
        if self.compiled is not None:
            try:
                return self.compiled(batch)
            except Exception as exc:  # noqa: BLE001 -- any failure falls back
                self._fall_back(exc)
        return self.eager(batch)

    def speedup(self, batch, autocast):
        """How many times faster the compiled module runs ``batch`` than the
        eager one (0 if it fails to compile).

        Each module runs ``batch`` once to warm up (the compiled one
        compiles), then :data:`_TIMED_CALLS` times, interleaved; the fastest
        call of each counts. Run on a batch of the shape the transform will
        use: compiled modules are specialised to it.

        Parameters
        ----------
        batch : torch.Tensor
            A batch of ``batch_size`` images on the module's device, made
            under ``torch.inference_mode`` as the transform's batches are
            (the compiled module is specialised to that too: an ordinary
            tensor would compile a second graph).
        autocast : context manager
            The autocast the transform runs under.
        """
        device = batch.device
        with torch.inference_mode(), autocast:
            self.eager(batch)
            self(batch)
            if self.compiled is None:
                return 0.0
            eager_s, compiled_s = [], []
            for _ in range(_TIMED_CALLS):
                eager_s.append(_seconds(self.eager, batch, device))
                compiled_s.append(_seconds(self.compiled, batch, device))
        return min(eager_s) / max(min(compiled_s), 1e-12)

    def _fall_back(self, exc):
        self.compiled, self.failed = None, True
        device = next((p.device.type for p in self.eager.parameters()), "cpu")
        _FAILED_DEVICE_TYPES.add(device)
        if not _WARNED:
            _WARNED.append(True)
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                "features are computed eagerly (same values, slower). Pass "
                "compile=False to skip compiling, or install a C++ compiler "
                "(inductor needs one on CPUs).",
                RuntimeWarning, stacklevel=3,
            )


def _seconds(module, batch, device):
    """Wall seconds of ``module(batch)``, the device's queue drained."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    module(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
