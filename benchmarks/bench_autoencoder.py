"""Fit time of AutoencoderTransformer against its peers, measured in one run.

Data: 20000 x 784 float32 rows, a 10-d Gaussian latent through a fixed random
two-layer tanh map plus noise (seed 0). Model: 784-256-32-256-784 ReLU MLP
with a linear code, Adam (lr 1e-3), 10 epochs, shuffled minibatches.

Contenders, interleaved (one of each per repeat), medians reported:

* ``replearn``: ``AutoencoderTransformer`` (skorch engine, whole-batch fetching)
  with ``init="random"`` and ``early_stopping=False``: the loop's model, trained
  on all rows (the defaults add a PCA path and hold out 10% of the rows);
* ``torch loop``: a plain hand-written torch loop of the same model (the floor);
* ``torch loop, fused Adam``: the same with ``Adam(fused=True)``, which the
  engine uses: the like-for-like comparison;
* ``MLPRegressor``: scikit-learn's MLP trained on X -> X, same layers and epochs;
* ``PCA``: ``PCA(n_components=32)`` (time and error; the linear optimum).

Also printed: the achieved GFLOP/s of each neural fit as a fraction of this
machine's float32 matmul rate (a 2048^3 ``torch.mm``, measured here).

Run::

    python benchmarks/bench_autoencoder.py            # full (a few minutes)
    python benchmarks/bench_autoencoder.py --quick    # smaller, for a smoke run
    python benchmarks/bench_autoencoder.py --threads 1 --save   # the docs' report
"""

import argparse
import statistics
import time
import warnings

import _report
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from threadpoolctl import threadpool_limits

from sklearn_replearn import AutoencoderTransformer
from sklearn_replearn._engine import fused_optimizer_kwargs
from sklearn_replearn.autoencoder._modules import make_mlp

N_FEATURES, HIDDEN, CODE, LATENT = 784, 256, 32, 10


def make_data(n_samples, seed=0):
    rng = np.random.RandomState(seed)
    latent = rng.randn(n_samples, LATENT)
    w1 = rng.randn(LATENT, 64) / np.sqrt(LATENT)
    w2 = rng.randn(64, N_FEATURES) / np.sqrt(64)
    X = np.tanh(np.tanh(latent @ w1) @ w2) + 0.05 * rng.randn(n_samples, N_FEATURES)
    return X.astype(np.float32)


def fit_replearn(X, batch_size, epochs):
    # The loop's model and data: no PCA start (init="pca" adds linear paths
    # beside the layers) and no held-out rows (early stopping holds out 10%).
    model = AutoencoderTransformer(
        n_components=CODE, hidden_layer_sizes=(HIDDEN,), max_iter=epochs,
        batch_size=batch_size, tol=None, init="random", early_stopping=False,
        device="cpu", random_state=0,
    )
    model.fit(X)
    return -model.score(X)


def fit_torch_loop(X, batch_size, epochs, fused=None):
    """What a careful user writes by hand: tensors, randperm, Adam."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        make_mlp((N_FEATURES, HIDDEN, CODE), "relu"),
        make_mlp((CODE, HIDDEN, N_FEATURES), "relu"),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    data = torch.from_numpy(X)
    for _ in range(epochs):
        order = torch.randperm(len(data))
        for start in range(0, len(data), batch_size):
            batch = data[order[start:start + batch_size]]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(data), data).item()


def fit_mlp_regressor(X, batch_size, epochs):
    model = MLPRegressor(
        hidden_layer_sizes=(HIDDEN, CODE, HIDDEN), max_iter=epochs,
        batch_size=batch_size, learning_rate_init=1e-3, tol=0, n_iter_no_change=epochs,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, X)
    return float(np.mean((model.predict(X) - X) ** 2))


def fit_pca(X, batch_size, epochs):
    pca = PCA(n_components=CODE, random_state=0).fit(X)
    return float(np.mean((pca.inverse_transform(pca.transform(X)) - X) ** 2))


def fit_torch_loop_fused(X, batch_size, epochs):
    """The same loop with Adam(fused=True), as AutoencoderTransformer's engine."""
    # fused=True where this torch has the kernel (the CPU since torch 2.4).
    fused = fused_optimizer_kwargs(torch.optim.Adam, "cpu").get("fused")
    return fit_torch_loop(X, batch_size, epochs, fused=fused)


CONTENDERS = {
    "replearn": fit_replearn,
    "torch loop": fit_torch_loop,
    "torch loop, fused Adam": fit_torch_loop_fused,
    "MLPRegressor": fit_mlp_regressor,
    "PCA": fit_pca,
}


def matmul_gflops(size=2048, repeats=5):
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def training_flops(n_samples, epochs):
    """Multiply-adds of the 4 linear layers, x2 for FLOPs, x3 for backward."""
    macs = 2 * (N_FEATURES * HIDDEN + HIDDEN * CODE)
    return 3 * 2 * macs * n_samples * epochs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5000 rows, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and BLAS threads (MLPRegressor and PCA run "
                        "on numpy's BLAS); default: the libraries' choice")
    _report.add_save_argument(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    with _report.report(args.save, device="cpu",
                        variant="quick" if args.quick else None):
        run(args)


def run(args):
    n_samples = 5000 if args.quick else 20000
    repeats = args.repeats or (2 if args.quick else 3)
    X = make_data(n_samples)
    peak = matmul_gflops()
    print(f"# {n_samples}x{N_FEATURES} float32, {args.epochs} epochs, "
          f"{repeats} interleaved repeats, medians; fp32 matmul peak "
          f"{peak:.1f} GFLOP/s")
    print("| batch | contender | fit s (median) | / torch loop | train MSE "
          "| GFLOP/s | of peak |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    # Warm-up: first calls pay one-time import and allocator costs.
    for fit in CONTENDERS.values():
        fit(X[:1024], 128, 1)
    for batch_size in (128, 1024):
        times = {name: [] for name in CONTENDERS}
        errors = {}
        for _ in range(repeats):
            for name, fit in CONTENDERS.items():
                start = time.perf_counter()
                errors[name] = fit(X, batch_size, args.epochs)
                times[name].append(time.perf_counter() - start)
        floor = statistics.median(times["torch loop"])
        for name in CONTENDERS:
            median = statistics.median(times[name])
            if name == "PCA":
                gflops = of_peak = "-"
            else:
                rate = training_flops(n_samples, args.epochs) / median / 1e9
                gflops, of_peak = f"{rate:.1f}", f"{rate / peak:.0%}"
            print(f"| {batch_size} | {name} | {median:.2f} | {median / floor:.2f} "
                  f"| {errors[name]:.5f} | {gflops} | {of_peak} |")


if __name__ == "__main__":
    main()
