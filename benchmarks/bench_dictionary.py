"""DictionaryLearner against scikit-learn, measured in the same run.

Prints one row per target, with the ratio to scikit-learn:

* fit (issue 15): time for ``DictionaryLearner`` to reach the final objective
  of ``MiniBatchDictionaryLearning``, on every data set of the quality suite
  (``bench_quality.py``'s training splits: digits, textures, faces,
  natural-image patches; k=64 atoms, alpha=1) and on scikit-learn's
  image-denoising example (7x7 patches of the left half of skimage's
  ``camera`` photo at 128x128 and 256x256, minus their mean, divided by their
  standard deviation; k=50, alpha=1, batch_size=200), against scikit-learn
  with its own defaults and stopping rule (the example's ``max_iter=10`` for
  the photo) and with a fixed 10 epochs (target: ratio >= 10, objective within
  0.1%). The objective is the mean lasso objective of the training data with
  exact (LARS) codes over each dictionary. Two rows of ours per target:
  "to target" is the fewest epochs (``tol=None``) whose objective is within
  0.1% of scikit-learn's, "default" is a fit with the library's defaults,
  stopping rule included, whatever objective it ends at;
* equal settings (issue 23): scikit-learn's denoising example as it is
  (7x7 patches of the left half of ``skimage.data.camera()[::2, ::2]``,
  standardised; ``n_components=50, batch_size=200, alpha=1``), both
  libraries running the same 10 epochs (``max_iter=10``, no stopping rule),
  with the objective of each (target: ratio >= 10, objective no worse);
* lasso transform: ``DictionaryLearner.transform`` (batched FISTA) vs
  ``sparse_encode(algorithm="lasso_lars")`` on 8x8 patches of digits, with the
  same dictionary, objective within 1% (target: >= 20x faster). It runs at
  ``transform_tol=1e-2``: each sample stops once its duality gap certifies an
  objective within 1% of its optimum, which is the target's own tolerance;
  the measured ratio of objectives is printed;
* OMP: ``transform`` with ``transform_algorithm="omp"`` vs
  ``sparse_encode(algorithm="omp")``, same dictionary and sparsity (>= 2x);
* supervised fit on digits (target: under a minute).

Repeats are interleaved (scikit-learn, ours, ours, scikit-learn...) and the
median is reported. ``--threads N`` sets torch's and the BLAS's threads (one
thread each is the fair comparison on a shared machine). Usage::

    python benchmarks/bench_dictionary.py [--quick] [--repeats N] [--device cpu]
        [--threads N] [--only fit|equal|coders] [--datasets digits,camera256,...]
    python benchmarks/bench_dictionary.py --rules 1e-3:2,2e-3:1,3e-3:1
    python benchmarks/bench_dictionary.py --only equal --threads 1 --save PATH

``--save`` writes the report to ``docs/benchmarks/results/`` (see
``_report.py``).
"""

import argparse
import statistics
import time
import warnings

import _report
import numpy as np
import sklearn
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


# ------------------------------------------------------------ fit (issue 15)
SUITE = ("digits", "textures", "faces", "patches")
PHOTOS = {"camera128": 128, "camera256": 256}
FIT_DATASETS = SUITE + tuple(PHOTOS)


def denoising_patches(size):
    """scikit-learn's image-denoising example's training data, on a bundled
    photo: skimage's ``camera`` (512x512) block-averaged to ``size x size``,
    all 7x7 patches of its left half, minus their mean, over their standard
    deviation (7,076 patches at 128, 30,500 at 256)."""
    import skimage.data

    image = skimage.data.camera() / 255.0
    factor = image.shape[0] // size
    image = image.reshape(size, factor, size, factor).mean(axis=(1, 3))
    data = extract_patches_2d(image[:, : size // 2], (7, 7))
    data = data.reshape(len(data), -1)
    data -= data.mean(axis=0)
    data /= data.std(axis=0)
    return data


def fit_data(name):
    """Training rows of a data set, and the scikit-learn settings to match."""
    if name in PHOTOS:
        # The example: MiniBatchDictionaryLearning(n_components=50,
        # batch_size=200, alpha=1.0, max_iter=10), stopping by its own rule.
        return denoising_patches(PHOTOS[name]), dict(
            n_components=50, alpha=1.0, batch_size=200, max_iter=10)
    from bench_quality import LOADERS  # the suite's splits, uncapped

    X_train = LOADERS[name]()[0]
    return np.ascontiguousarray(X_train, dtype=np.float64), dict(
        n_components=64, alpha=1.0)


def example_patches():
    """The training data of scikit-learn's denoising example, on skimage's
    ``camera``: every 7x7 patch of the left half of the photo subsampled to
    256x256, each feature minus its mean, over its standard deviation
    (30,500 patches)."""
    import skimage.data

    image = skimage.data.camera()[::2, ::2] / 255.0
    data = extract_patches_2d(image[:, : image.shape[1] // 2], (7, 7))
    data = data.reshape(len(data), -1)
    data -= data.mean(axis=0)
    data /= data.std(axis=0)
    return data


def bench_equal_settings(device, repeats, epochs=10):
    """Both libraries at the example's settings, for the same ``epochs``."""
    X = example_patches()
    settings = dict(n_components=50, alpha=1.0, batch_size=200, max_iter=epochs)

    def theirs():
        return quiet(lambda: MiniBatchDictionaryLearning(
            tol=0.0, max_no_improvement=None, random_state=0, **settings).fit(X))

    def ours():
        return quiet(lambda: DictionaryLearner(
            tol=None, random_state=0, device=device, **settings).fit(X))

    (t_theirs, t_ours), (sklearn_model, model) = interleaved([theirs, ours],
                                                             repeats)
    target = exact_objective(X, sklearn_model.components_, 1.0)
    reached = exact_objective(X, model.components_, 1.0)
    return dict(
        name=f"equal settings: camera[::2, ::2] {X.shape[0]}x{X.shape[1]} k=50, "
             f"batch 200, {int(sklearn_model.n_iter_)} / {model.n_iter_} ep",
        ours=t_ours, theirs=t_theirs, target="ratio >= 10, objective <= sklearn",
        detail=f"objective ours {reached:.5f}, sklearn {target:.5f} "
               f"(ratio {reached / target:.5f})")


def exact_objective(X, D, alpha):
    """Mean lasso objective of X over the dictionary D with exact codes."""
    codes = sparse_encode(X, D, algorithm="lasso_lars", alpha=alpha)
    return objective(X, D, codes, alpha)


def quiet(function):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function()


def bench_suite_fit(name, device, repeats, max_epochs=60):
    """Rows for one data set: scikit-learn with its own stopping rule and with
    10 epochs, against our fit to its objective and our default fit."""
    X, settings = fit_data(name)
    alpha, n_components = settings["alpha"], settings["n_components"]
    variants = {
        "own rule": dict(settings),
        "10 epochs": {**settings, "max_iter": 10, "tol": 0.0,
                      "max_no_improvement": None},
    }

    def ours(**params):
        return DictionaryLearner(n_components=n_components, alpha=alpha,
                                 random_state=0, device=device, **params)

    default = quiet(lambda: ours().fit(X))
    default_objective = exact_objective(X, default.components_, alpha)
    rows = []
    for variant, params in variants.items():
        def theirs(params=params):
            return quiet(lambda: MiniBatchDictionaryLearning(
                random_state=0, **params).fit(X))

        sklearn_model = theirs()
        target = exact_objective(X, sklearn_model.components_, alpha)
        # Fewest epochs of ours that reach scikit-learn's final objective
        # (within 0.1%); the trajectory does not depend on max_iter.
        for epochs in range(1, max_epochs + 1):
            model = quiet(lambda: ours(max_iter=epochs, tol=None).fit(X))
            reached = exact_objective(X, model.components_, alpha)
            if reached <= target * 1.001:
                break

        def to_target(epochs=epochs):
            return quiet(lambda: ours(max_iter=epochs, tol=None).fit(X))

        def by_default():
            return quiet(lambda: ours().fit(X))

        (t_theirs, t_target, t_default), _ = interleaved(
            [theirs, to_target, by_default], repeats)
        label = f"{name} {X.shape[0]}x{X.shape[1]} k={n_components}"
        sklearn_epochs = int(sklearn_model.n_iter_)
        rows.append(dict(
            name=f"{label}, sklearn {variant} ({sklearn_epochs} ep), ours to target",
            ours=t_target, theirs=t_theirs, target="ratio >= 10",
            detail=f"{epochs} ep; objective ours / sklearn "
                   f"{reached / target:.5f} (sklearn {target:.5f})",
        ))
        rows.append(dict(
            name=f"{label}, sklearn {variant} ({sklearn_epochs} ep), ours default",
            ours=t_default, theirs=t_theirs, target="(stopping rule)",
            detail=f"{default.n_iter_} ep; objective ours / sklearn "
                   f"{default_objective / target:.5f}",
        ))
    return rows


def bench_stopping_rules(name, device, repeats, rules):
    """Rows for one data set: our fit under each candidate stopping rule
    ``(tol, n_iter_no_change)`` against scikit-learn with its own rule, timed
    in the same interleaved repeats (how the rule's defaults were chosen:
    README, DictionaryLearner benchmark)."""
    X, settings = fit_data(name)
    alpha, n_components = settings["alpha"], settings["n_components"]

    def theirs():
        return quiet(lambda: MiniBatchDictionaryLearning(
            random_state=0, **settings).fit(X))

    def ours(tol, n_iter_no_change):
        return lambda: quiet(lambda: DictionaryLearner(
            n_components=n_components, alpha=alpha, random_state=0,
            device=device, tol=tol, n_iter_no_change=n_iter_no_change).fit(X))

    times, models = interleaved([theirs] + [ours(*rule) for rule in rules],
                                repeats)
    target = exact_objective(X, models[0].components_, alpha)
    label = (f"{name} {X.shape[0]}x{X.shape[1]} k={n_components}, sklearn own "
             f"rule ({int(models[0].n_iter_)} ep)")
    rows = []
    for (tol, n_iter_no_change), seconds, model in zip(rules, times[1:], models[1:]):
        reached = exact_objective(X, model.components_, alpha)
        rows.append(dict(
            name=f"{label}, ours tol={tol:g} n_iter_no_change={n_iter_no_change}",
            ours=seconds, theirs=times[0], target="objective within 0.1%",
            detail=f"{model.n_iter_} ep; objective ours / sklearn "
                   f"{reached / target:.5f}"))
    return rows


def _rules(text):
    """'1e-3:2,3e-3:1' to [(0.001, 2), (0.003, 1)]."""
    rules = []
    for item in text.split(","):
        tol, _, patience = item.strip().partition(":")
        rules.append((float(tol), int(patience or 2)))
    return rules


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
                        help="torch and BLAS threads (1 avoids contention on a "
                             "busy machine); default: the libraries' choice")
    parser.add_argument("--only", choices=("fit", "equal", "coders"), default=None,
                        help="only the fit rows, only the equal-settings row, "
                             "or only the coders' rows")
    parser.add_argument("--datasets", default=None,
                        help="comma-separated fit data sets, from "
                             + ",".join(FIT_DATASETS))
    parser.add_argument("--rules", type=_rules, default=None,
                        help="instead of the other rows: candidate stopping "
                             "rules tol:n_iter_no_change, e.g. '1e-3:2,3e-3:1', "
                             "on the fit data sets")
    _report.add_save_argument(parser)
    args = parser.parse_args()
    limits = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        limits = threadpool_limits(args.threads)
    datasets = (FIT_DATASETS if args.datasets is None else
                tuple(name.strip() for name in args.datasets.split(",")))
    unknown = sorted(set(datasets) - set(FIT_DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {FIT_DATASETS}")
    variant = args.only or ("rules" if args.rules else None)
    with _report.report(args.save, device=args.device, variant=variant):
        run(args, datasets)
    if limits is not None:
        limits.restore_original_limits()


def run(args, datasets):
    print(f"# scikit-learn {sklearn.__version__}, BLAS threads "
          f"{args.threads or 'default'}, {args.repeats} interleaved repeats, "
          "medians; ratio = sklearn s / ours s")
    print(f"| {'benchmark':<48} | {'ours s':>8} | {'sklearn s':>9} | {'ratio':>7} "
          f"| target | detail |")
    print("|" + "---|" * 6, flush=True)
    if args.rules:
        for name in datasets:
            for row in bench_stopping_rules(name, args.device, args.repeats,
                                            args.rules):
                print_row(row)
    elif args.only == "equal":
        print_row(bench_equal_settings(args.device, args.repeats))
    elif args.only != "fit":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        P = patches(4000 if args.quick else 20000)
        print_row(bench_supervised(X, y, args.device))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in (64,) if args.quick else (64, 256):
                D = MiniBatchDictionaryLearning(
                    n_components=k, alpha=1.0, max_iter=1,
                    random_state=0).fit(P[:2000]).components_
                print_row(bench_omp(P, D, 6, args.device, args.repeats))
                print_row(bench_lasso(P, D, 1.0, args.device, args.repeats))
    if args.only in (None, "fit") and not args.rules:
        print_row(bench_equal_settings(args.device, args.repeats))
        if args.quick and args.datasets is None:
            datasets = ("digits", "camera128")
        for name in datasets:
            for row in bench_suite_fit(name, args.device, args.repeats):
                print_row(row)


if __name__ == "__main__":
    main()
