"""Compiled inference: PretrainedCNNFeatures against a compiled, frozen loop.

Run by ``python benchmarks/bench_pretrained.py --compiled`` (or directly).
On ``n`` images 224 x 224 (resize 256, crop 224), batch 32, in the dtype
``autocast=True`` picks (bfloat16 on CPUs with AVX512-BF16 or AMX-BF16,
float16 on CUDA, float32 elsewhere), it times, interleaved and repeated
(medians, images/s):

* ``eager``: the hand-tuned eager loop: channels-last, batch norms folded,
  ``torch.inference_mode()``, autocast in that dtype;
* ``compiled``: the peer to beat: the same model through
  ``torch.compile(..., options={"freezing": True})`` (inductor freezes the
  weights: convolutions prepacked, batch norms folded), same loop; its
  compile time (``compile s``) is measured once, outside the timings;
* ``ours``: ``transform`` at its defaults once it has compiled (what
  ``compile="auto"`` runs once the work passed the break-even, built here
  with ``compile=True`` and compiled outside the timings);
* ``auto``: ``transform`` at its defaults past the break-even, where
  ``compile="auto"`` has compiled and timed the compiled module against the
  eager one, and kept it unless it ran below 0.95 times the eager speed
  (``auto is`` says which it kept); the break-even is
  lowered to zero for its first call (outside the timings), so that a quick
  run reaches it;
* ``eager 10`` / ``ours 10`` / ``ours 10 c=F``: the eager loop, and
  ``transform`` of a fresh estimator at its defaults (``"auto"`` runs 10
  images eagerly) and with ``compile=False``, on 10 images (``transform``
  pads the last batch to ``batch_size`` images: 32 here), and
  ``bi=F/eager10``: ``transform`` of 10 images with ``batch_invariant=False``
  (no padding) over the eager loop's;

and prints the break-even, ``compile s / (1/eager - 1/compiled)`` images (the
work from which compiling pays), and the share of a matmul peak that
``compiled`` and ``ours`` reach (FLOPs counted by
``torch.utils.flop_counter``); the peak is the best 2048 x 2048 matmul in the
same dtype, measured after each round of the same run.
"""

import contextlib
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn._utils._precision import autocast_dtype
from sklearn_replearn.vision import _compile


def dtype_line():
    """The dtype ``autocast=True`` picks here (the CPU and its flags are in
    the report's header)."""
    dtype = autocast_dtype(torch.device("cpu"), True) or torch.float32
    return f"# autocast dtype on this CPU: {str(dtype).removeprefix('torch.')}"


def _autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=dtype)


def matmul_peak(dtype, device, size=2048, repeats=3):
    """Best FLOP/s of ``size x size`` matmuls in ``dtype`` (float32 if None)."""
    a = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    b = torch.randn(size, size, device=device, dtype=dtype or torch.float32)
    times = []
    with torch.inference_mode():
        a @ b  # warm-up
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times)


def flops_per_image(model, device):
    x = torch.randn(1, 3, 224, 224, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def loop(model, preprocess, images, batch_size, device, dtype, pad=False):
    """The hand-written loop: preprocessing, channels-last, autocast; ``pad``
    fills the last batch up (one input shape for the compiled model)."""
    outputs = []
    with torch.inference_mode(), _autocast(device, dtype):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size])
            x = preprocess(batch.permute(0, 3, 1, 2)).to(device)
            if pad and x.shape[0] < batch_size:
                x = torch.cat([x, x.new_zeros((batch_size - x.shape[0],
                                               *x.shape[1:]))])
            x = x.contiguous(memory_format=torch.channels_last)
            outputs.append(model(x)[:len(images) - start].float().cpu())
    return torch.cat(outputs)


def bench_compiled(name, images, args, reference, fold):
    """Rates (images/s) and compile time for backbone ``name``."""
    device, batch_size = args.device, args.batch_size
    dtype = autocast_dtype(torch.device(device), True)
    torch.manual_seed(0)
    model, preprocess = reference(name)
    eager = fold(model.to(device, memory_format=torch.channels_last))
    eager = eager.to(memory_format=torch.channels_last)
    compiled = torch.compile(eager, dynamic=False, options={"freezing": True})
    start = time.perf_counter()
    loop(compiled, preprocess, images[:batch_size], batch_size, device, dtype,
         pad=True)
    compile_s = time.perf_counter() - start
    ours = PretrainedCNNFeatures(name, weights=None, batch_size=batch_size,
                                 device=device, compile=True,
                                 random_state=0).fit(images[:1])
    ours.transform(images[:batch_size])  # compiles, outside the timings
    auto, auto_mode = past_break_even(name, images, batch_size, device)
    few = images[:10]
    methods = {
        "eager": lambda: loop(eager, preprocess, images, batch_size, device, dtype),
        "compiled": lambda: loop(compiled, preprocess, images, batch_size, device,
                                 dtype, pad=True),
        "ours": lambda: ours.transform(images),
        "auto": lambda: auto.transform(images),
        "eager 10": lambda: loop(eager, preprocess, few, batch_size, device, dtype),
        # A fresh estimator each time, at its defaults ("auto" runs 10 images
        # eagerly) and with compile=False; fit (loading the backbone) is not
        # timed.
        "ours 10": {},
        "ours 10 c=F": {"compile": False},
        "ours 10 bi=F": {"batch_invariant": False},
    }
    rates = {key: [] for key in methods}
    peaks = []
    for repeat in range(args.repeats + 1):  # the first round warms up
        for key, method in methods.items():  # interleaved
            if isinstance(method, dict):
                fresh = PretrainedCNNFeatures(name, weights=None, device=device,
                                              batch_size=batch_size, random_state=0,
                                              **method).fit(few[:1])
                method = partial_transform(fresh, few)
            count = len(few) if " 10" in key else len(images)
            start = time.perf_counter()
            method()
            if repeat:
                rates[key].append(count / (time.perf_counter() - start))
        # The matmul peak, interleaved too (the load of a shared machine varies).
        peaks.append(matmul_peak(dtype, device))
    result = {key: statistics.median(values) for key, values in rates.items()}
    result["peak"] = max(peaks)
    result["compile s"] = compile_s
    gain = 1 / result["eager"] - 1 / result["compiled"]
    result["break-even"] = compile_s / gain if gain > 0 else float("inf")
    result["flops"] = flops_per_image(eager, device)
    result["dtype"] = dtype
    result["auto is"] = auto_mode
    return result


def past_break_even(name, images, batch_size, device):
    """A fresh estimator at its defaults once ``compile="auto"`` has decided
    (its break-even lowered to zero for one call), and what it chose."""
    estimator = PretrainedCNNFeatures(name, weights=None, batch_size=batch_size,
                                      device=device, random_state=0).fit(images[:1])
    saved = _compile._BREAK_EVEN_IMAGES
    _compile._BREAK_EVEN_IMAGES = {key: 0 for key in saved}
    _compile._NO_GAIN.clear()  # each backbone gets its own verdict
    try:
        estimator.transform(images[:batch_size])
    finally:
        _compile._BREAK_EVEN_IMAGES = saved
    compiled = any(isinstance(module, _compile.CompiledOrEager)
                   for module in estimator._runtime.values())
    return estimator, "compiled" if compiled else "eager"


def partial_transform(estimator, images):
    return lambda: estimator.transform(images)


def compiled_table(names, images, args, reference, fold, labels=None):
    print(dtype_line())
    dtype = autocast_dtype(torch.device(args.device), True)
    label = str(dtype or torch.float32).removeprefix("torch.")
    print(f"# peak: best {label} 2048x2048 matmul of all rounds (GFLOP/s); "
          "cmp/ours peak: their FLOP/s as a share of it")
    print(f"{'backbone':<10} {'eager':>6} {'compiled':>8} {'ours':>6} "
          f"{'ours/cmp':>8} {'auto':>6} {'auto is':>8} {'auto/cmp':>8} "
          f"{'compile s':>9} {'break-even':>10} {'peak':>5} "
          f"{'cmp peak':>8} {'ours peak':>9} {'eager 10':>8} {'ours 10':>7} "
          f"{'ours 10 c=F':>11} {'ours10/c=F':>10} {'ours10/eager10':>14} "
          f"{'bi=F/eager10':>12}")
    for name, label in zip(names, labels or names):
        rate = bench_compiled(name, images, args, reference, fold)
        share = rate["flops"] / rate["peak"]
        print(f"{label:<10} {rate['eager']:6.1f} {rate['compiled']:8.1f} "
              f"{rate['ours']:6.1f} {rate['ours'] / rate['compiled']:8.2f} "
              f"{rate['auto']:6.1f} {rate['auto is']:>8} "
              f"{rate['auto'] / rate['compiled']:8.2f} "
              f"{rate['compile s']:9.1f} {rate['break-even']:10.0f} "
              f"{rate['peak'] / 1e9:5.0f} "
              f"{rate['compiled'] * share:8.0%} {rate['ours'] * share:9.0%} "
              f"{rate['eager 10']:8.1f} {rate['ours 10']:7.1f} "
              f"{rate['ours 10 c=F']:11.1f} "
              f"{rate['ours 10'] / rate['ours 10 c=F']:10.2f} "
              f"{rate['ours 10'] / rate['eager 10']:14.2f} "
              f"{rate['ours 10 bi=F'] / rate['eager 10']:12.2f}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from bench_pretrained import main

    main(["--compiled", *sys.argv[1:]])
