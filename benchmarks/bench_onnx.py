"""ONNX Runtime vs ``transform``: rows (or images) per second, same threads.

Each estimator is fitted (or built with random weights: speed does not depend
on their values), exported with ``sklearn_replearn.onnx.to_onnx`` and run by
ONNX Runtime's CPU provider with ``intra_op_num_threads`` equal to torch's
thread count. Both are timed on the same batch, one call per batch size:

* a small batch (1 row / 1 image: serving one request),
* a large batch (4096 rows / 32 images: a batch job).

``transform`` runs with ``batch_size=1`` for the small batch (it pads its
last batch to ``batch_size`` rows) and its default for the large one
(``DictionaryLearner`` codes in chunks of its own size either way).

Repeats are interleaved (transform, ONNX, transform, ...) after a warm-up; the
table shows medians and ``onnx/transform`` (> 1: ONNX Runtime is faster).
``PretrainedCNNFeatures`` is timed twice: ``transform`` in float32
(``autocast=False``) and with its default (bfloat16 on CPUs with AVX512-BF16 or
AMX, float32 elsewhere); the ONNX graph always computes in float32.

    python benchmarks/bench_onnx.py             # 5 repeats
    python benchmarks/bench_onnx.py --quick     # 3 repeats, no resnet50
    python benchmarks/bench_onnx.py --quick --threads 1 --save   # docs' report
"""

import argparse
import statistics
import time

import _report
import numpy as np
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits

from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)
from sklearn_replearn.onnx import to_onnx


def session(model, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare(methods, repeats):
    """Median seconds of each method, repeats interleaved after a warm-up."""
    times = {name: [] for name in methods}
    for function in methods.values():
        function()
    for _ in range(repeats):
        for name, function in methods.items():
            times[name].append(timed(function))
    return {name: statistics.median(values) for name, values in times.items()}


def estimators(quick):
    """(label, fitted estimator, small batch, large batch) to time."""
    X, _ = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    rng = np.random.RandomState(0)
    rows = X[rng.randint(0, len(X), 4096)]
    wide = rng.rand(4096, 784).astype(np.float32)
    fit = dict(max_iter=2, tol=None, random_state=0, device="cpu")
    yield ("AE mlp 784-256-32", AutoencoderTransformer(
        n_components=32, hidden_layer_sizes=(256,), **fit).fit(wide[:512]), wide)
    yield ("VAE mlp 784-256-16", VAETransformer(
        n_components=16, hidden_layer_sizes=(256,), **fit).fit(wide[:512]), wide)
    yield ("AE conv digits 8x8", AutoencoderTransformer(
        n_components=16, architecture="conv", hidden_layer_sizes=(16, 32),
        image_shape=(1, 8, 8), **fit).fit(X), rows)
    dictionary = DictionaryLearner(n_components=64, alpha=0.1, max_iter=2,
                                   random_state=0, device="cpu").fit(X)
    yield "Dict 64 atoms lasso", dictionary, rows
    threshold = DictionaryLearner(n_components=64, alpha=0.1, max_iter=2,
                                  transform_algorithm="threshold", random_state=0,
                                  device="cpu").fit(X)
    yield "Dict 64 atoms threshold", threshold, rows
    images = rng.randint(0, 256, (32, 224, 224, 3), np.uint8)
    for name in ("resnet18",) if quick else ("resnet18", "resnet50"):
        for autocast in (False, True):
            cnn = PretrainedCNNFeatures(name, weights=None, image_size=224,
                                        autocast=autocast, batch_size=32,
                                        device="cpu", random_state=0).fit(images[:1])
            label = f"{name} 224 {'default' if autocast else 'fp32'}"
            yield label, cnn, images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=None)
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with _report.report(args.save, device="cpu",
                        variant="quick" if args.quick else None):
        run(args)


def run(args):
    repeats = args.repeats or (3 if args.quick else 5)
    print(f"# onnxruntime {ort.__version__}, {args.threads} threads each (ONNX "
          f"Runtime intra-op), {repeats} interleaved repeats after a warm-up, "
          "medians")
    print(f"{'estimator':<26} {'batch':>5} {'transform/s':>12} {'onnx/s':>12} "
          f"{'onnx/transform':>14}")
    exported = {}
    for label, estimator, data in estimators(args.quick):
        key = id(estimator.model_) if hasattr(estimator, "model_") else id(estimator)
        model = exported.get(label.rsplit(" ", 1)[0] if "224" in label else key)
        if model is None:
            model = to_onnx(estimator, data[:2])
        if "224" in label:
            exported[label.rsplit(" ", 1)[0]] = model
        run = session(model, args.threads)
        name = run.get_inputs()[0].name
        large = 32 if data.ndim == 4 else 4096
        default_batch = getattr(estimator, "batch_size", None)
        for size in (1, large):
            batch = np.ascontiguousarray(data[:size])
            if isinstance(default_batch, int):
                # transform pads its last batch to batch_size rows (so that a
                # row's output never depends on its neighbours): serving one
                # row, a user sets batch_size=1.
                estimator.set_params(batch_size=min(default_batch, size))
            seconds = compare({
                "transform": lambda: estimator.transform(batch),
                "onnx": lambda: run.run(None, {name: batch}),
            }, repeats)
            rate = {key: size / value for key, value in seconds.items()}
            print(f"{label:<26} {size:>5} {rate['transform']:12.1f} "
                  f"{rate['onnx']:12.1f} {rate['onnx'] / rate['transform']:14.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
