"""DictionaryLearner against scikit-learn, measured in the same run.

Prints one row per target of issue 5, with the ratio to scikit-learn:

* fit: time for DictionaryLearner to reach the final objective of
  MiniBatchDictionaryLearning (digits, k=64, sklearn's epochs), vs sklearn's
  fit time (target: <= 1/10);
* lasso transform: ``DictionaryLearner.transform`` (batched FISTA) vs
  ``sparse_encode(algorithm="lasso_lars")`` on 8x8 patches of digits, with the
  same dictionary, objective within 1% (target: >= 20x faster). It runs at
  ``transform_tol=1e-2``: each sample stops once its duality gap certifies an
  objective within 1% of its optimum, which is the target's own tolerance;
  the measured ratio of objectives is printed;
* OMP: ``transform`` with ``transform_algorithm="omp"`` vs
  ``sparse_encode(algorithm="omp")``, same dictionary and sparsity (>= 2x);
* supervised fit on digits (target: under a minute).

Repeats are interleaved (ours, theirs, ours, theirs...) and the median is
reported. Usage::

    python benchmarks/bench_dictionary.py [--quick] [--repeats N] [--device cpu]
        [--threads N]
"""

import argparse
import statistics
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.image import extract_patches_2d

from sklearn_replearn import DictionaryLearner
from sklearn_replearn.sparse import lasso_objective


def timed(function):
    # A pause first: BLAS threads busy-wait for a while after their last
    # call, and no contender should pay for the previous one's threads.
    time.sleep(0.2)
    start = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def interleaved(functions, repeats):
    """Median time of each function, run alternately ``repeats`` times."""
    times = [[] for _ in functions]
    results = [None] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            seconds, results[i] = timed(function)
            times[i].append(seconds)
    return [statistics.median(t) for t in times], results


def objective(X, D, Z, alpha):
    return float(np.mean(0.5 * ((X - Z @ D) ** 2).sum(1) + alpha * np.abs(Z).sum(1)))


def patches(n_patches, seed=0):
    images = load_digits().images / 16.0
    rng = np.random.RandomState(seed)
    padded = [np.pad(image, 4) for image in images]  # 16x16 -> 8x8 patches
    per_image = int(np.ceil(n_patches / len(padded)))
    rows = [extract_patches_2d(image, (8, 8), max_patches=per_image, random_state=rng)
            .reshape(-1, 64) for image in padded]
    return np.concatenate(rows)[:n_patches]


def bench_fit(X, n_components, epochs, alpha, device, repeats):
    def sklearn_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return MiniBatchDictionaryLearning(
                n_components=n_components, alpha=alpha, max_iter=epochs,
                random_state=0).fit(X)

    seconds_sklearn, sklearn_model = timed(sklearn_fit)
    target = objective(X, sklearn_model.components_,
                       sparse_encode(X, sklearn_model.components_,
                                     algorithm="lasso_lars", alpha=alpha), alpha)
    # Fewest epochs of ours that reach sklearn's final objective.
    for our_epochs in range(1, 4 * epochs + 1):
        model = DictionaryLearner(n_components=n_components, alpha=alpha,
                                  max_iter=our_epochs, tol=None, random_state=0,
                                  device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        if -model.score(X) <= target * 1.001:
            break
    (seconds_ours, seconds_theirs), _ = interleaved(
        [lambda: model.fit(X), sklearn_fit], repeats)
    return dict(
        name=f"fit {X.shape[0]}x{X.shape[1]} k={n_components} "
             f"(ours {our_epochs} ep vs {epochs} ep)",
        ours=seconds_ours, theirs=min(seconds_theirs, seconds_sklearn),
        detail=f"objective ours {-model.score(X):.4f} / sklearn {target:.4f}",
        target="ratio >= 10",
    )


def with_dictionary(D, X, device, **params):
    """A DictionaryLearner whose dictionary is ``D`` (sklearn's, for a fair
    comparison): fitted for one epoch on a few rows, then given ``D``."""
    model = DictionaryLearner(n_components=D.shape[0], max_iter=1, tol=None,
                              random_state=0, device=device, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X[:D.shape[0]])
    model.components_ = D.astype(X.dtype)
    return model


def bench_lasso(X, D, alpha, device, repeats):
    # transform_tol is the relative duality gap: every sample certified within
    # 1% of its optimum, the target's own tolerance.
    model = with_dictionary(D, X, device, alpha=alpha, transform_tol=1e-2)

    def theirs():
        return sparse_encode(X, D, algorithm="lasso_lars", alpha=alpha)

    (t_ours, t_theirs), (Z, Z_ref) = interleaved([lambda: model.transform(X), theirs],
                                                 repeats)
    ours_obj = objective(X, D, Z, alpha)
    ref_obj = objective(X, D, Z_ref, alpha)
    X_t = torch.tensor(X, dtype=torch.float32)
    assert float(lasso_objective(X_t, torch.tensor(D, dtype=torch.float32),
                                 torch.tensor(Z, dtype=torch.float32),
                                 alpha).mean()) > 0
    return dict(
        name=f"lasso transform {X.shape[0]} patches k={D.shape[0]}",
        ours=t_ours, theirs=t_theirs,
        detail=f"objective ratio {ours_obj / ref_obj:.5f}", target="ratio >= 20",
    )


def bench_omp(X, D, n_nonzero, device, repeats):
    model = with_dictionary(D, X, device, transform_algorithm="omp",
                            transform_n_nonzero_coefs=n_nonzero)

    def theirs():
        return sparse_encode(X, D, algorithm="omp", n_nonzero_coefs=n_nonzero)

    (t_ours, t_theirs), (Z, Z_ref) = interleaved([lambda: model.transform(X), theirs],
                                                 repeats)
    error = np.mean((X - Z @ D) ** 2) / np.mean((X - Z_ref @ D) ** 2)
    return dict(
        name=f"OMP {X.shape[0]} patches k={D.shape[0]} s={n_nonzero}",
        ours=t_ours, theirs=t_theirs,
        detail=f"error ratio {error:.5f}, same supports "
               f"{np.mean((Z != 0) == (Z_ref != 0)):.4f}",
        target="ratio >= 2",
    )


def bench_supervised(X, y, device):
    model = DictionaryLearner(n_components=64, random_state=0, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seconds, _ = timed(lambda: model.fit(X, y))
    return dict(name="supervised fit digits k=64", ours=seconds, theirs=float("nan"),
                detail=f"{model.n_iter_} epochs", target="ours < 60 s")


def print_row(row):
    ratio = row["theirs"] / row["ours"]
    print(f"| {row['name']:<48} | {row['ours']:8.3f} | {row['theirs']:9.3f} "
          f"| {ratio:7.1f} | {row['target']} | {row['detail']} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 avoids OpenMP contention on a "
                             "busy machine); default: torch's choice")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    n_patches = 4000 if args.quick else 20000
    epochs = 2 if args.quick else 10
    P = patches(n_patches)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {args.device}, repeats {args.repeats} (median)")
    print(f"| {'benchmark':<48} | {'ours s':>8} | {'sklearn s':>9} | {'ratio':>7} "
          f"| target | detail |")
    print("|" + "---|" * 6, flush=True)
    print_row(bench_supervised(X, y, args.device))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sizes = (64,) if args.quick else (64, 256)
        for k in sizes:
            D = MiniBatchDictionaryLearning(n_components=k, alpha=1.0, max_iter=1,
                                            random_state=0).fit(P[:2000]).components_
            print_row(bench_omp(P, D, 6, args.device, args.repeats))
            print_row(bench_lasso(P, D, 1.0, args.device, args.repeats))
    print_row(bench_fit(X, 64, epochs, 1.0, args.device, args.repeats))


if __name__ == "__main__":
    main()
