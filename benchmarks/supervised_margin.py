"""How much supervised codes help a classifier, on the suite's labelled data.

Issue 15's target: with one set of defaults, ``DictionaryLearner`` fit with
labels, then ``StandardScaler`` and ``LogisticRegression``, beats the same
pipeline on unsupervised codes (same ``n_components``, ``alpha``, everything
else) by at least 2 accuracy points on average over the labelled data sets of
``benchmarks/bench_quality.py`` (digits, textures, faces) and by at least 1
point on each. The pipelines are ``bench_quality.py``'s: width
``--n-components`` (16), the library's defaults otherwise, fit on each data
set's fixed training split and scored on its test split (textures: training
patches from the left half of each image, test patches from the right half).

Nested cross-validation: ``--inner`` scores candidate settings without
looking at any test split, by cross-validation inside the training splits
(digits and faces: stratified 3-fold; textures: the left half of each image
cut again into its left and right quarters, 2 folds, so that overlapping
patches never straddle an inner split either). The setting with the best
mean inner margin over the three data sets is the default; the outer run
(the default, no ``--inner``) reports it on the test splits.

``--oracle`` prints the test-split margin of each ``--grid`` value of
``supervision_weight``: what a choice made on the test data would reach,
which bounds what any default can do there (a diagnostic, never a way to
choose).

Seeds run in parallel worker processes, each with one torch thread. Usage::

    python benchmarks/supervised_margin.py [--seeds 0-2] [--jobs 2]
        [--datasets digits,textures,faces] [--set name=value ...]
    python benchmarks/supervised_margin.py --inner --grid "supervision_weight=3;
        supervision_weight=10" [--seeds 0-1]
    python benchmarks/supervised_margin.py --oracle --grid "supervision_weight=1;
        supervision_weight=3;supervision_weight=10"

``--set`` overrides a ``DictionaryLearner`` parameter of both pipelines,
e.g. ``--set alpha=0.5`` (the unsupervised one keeps
``supervision_weight=0``; supervised-only parameters change only the
supervised one).
"""

import argparse
import ast
import os
import sys
import time
import warnings

import numpy as np
from joblib import Parallel, delayed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

DATASETS = ("digits", "textures", "faces")


# ------------------------------------------------------------------ data
def outer_split(name, max_train=2000, max_test=1000):
    """The suite's fixed (X_train, X_test, y_train, y_test) of ``name``."""
    import bench_quality

    return bench_quality.load(name, max_train, max_test)


def _textures_quarters():
    """Textures patches from the left half of each image only: those of its
    left quarter and those of its right quarter (two inner folds)."""
    import bench_quality as bq
    import skimage.data

    rng = np.random.RandomState(bq.DATA_SEED + 1)
    parts = {"left": ([], []), "right": ([], [])}
    for label, name in enumerate(bq.TEXTURE_IMAGES):
        image = bq._gray(getattr(skimage.data, name)())
        left_half = image[:, :image.shape[1] // 2]
        left, right = bq._patches_from_halves(left_half, 24, 150, 150, rng)
        for key, patches in (("left", left), ("right", right)):
            small = bq._block_mean(patches, 2)
            parts[key][0].append(small.reshape(len(small), -1).astype(np.float32))
            parts[key][1].append(np.full(len(small), label))
    (Xl, yl), (Xr, yr) = ((np.concatenate(a), np.concatenate(b))
                          for a, b in parts.values())
    return [(Xl, Xr, yl, yr), (Xr, Xl, yr, yl)]


def inner_splits(name):
    """Training/validation splits inside ``name``'s training split."""
    if name == "textures":
        return _textures_quarters()
    from sklearn.model_selection import StratifiedKFold

    X, _, y, _ = outer_split(name)
    folds = StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)
    return [(X[a], X[b], y[a], y[b]) for a, b in folds]


# ---------------------------------------------------------------- scores
def accuracy(data, seed, params, supervised):
    """Test accuracy of codes -> StandardScaler -> LogisticRegression."""
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_replearn import DictionaryLearner

    torch.set_num_threads(1)
    X_train, X_test, y_train, y_test = data
    params = {"n_components": 16, "random_state": seed, "device": "cpu", **params}
    if not supervised:
        params["supervision_weight"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DictionaryLearner(**params).fit(X_train, y_train)
        classifier = make_pipeline(StandardScaler(),
                                   LogisticRegression(max_iter=2000))
        classifier.fit(model.transform(X_train), y_train)
        return classifier.score(model.transform(X_test), y_test)


def _splits(name, inner):
    return inner_splits(name) if inner else [outer_split(name)]


def margins(names, seeds, settings, *, inner, jobs, base=None):
    """{(setting, name): array (seeds, folds) of supervised - unsupervised}.

    The unsupervised accuracies are computed once per (name, seed, fold)
    with ``base`` (the ``--set`` overrides) and shared by every setting.
    """
    base = base or {}
    data = {name: _splits(name, inner) for name in names}
    unsup_jobs = [(name, seed, fold) for name in names for seed in seeds
                  for fold in range(len(data[name]))]
    sup_jobs = [(index, name, seed, fold) for index in range(len(settings))
                for name, seed, fold in unsup_jobs]
    results = Parallel(n_jobs=jobs)(
        [delayed(accuracy)(data[n][f], s, base, False) for n, s, f in unsup_jobs]
        + [delayed(accuracy)(data[n][f], s, {**base, **settings[i]}, True)
           for i, n, s, f in sup_jobs])
    unsup = dict(zip(unsup_jobs, results[:len(unsup_jobs)]))
    sup = dict(zip(sup_jobs, results[len(unsup_jobs):]))
    out = {}
    for index in range(len(settings)):
        for name in names:
            folds = range(len(data[name]))
            out[index, name] = (
                np.array([[sup[index, name, s, f] for f in folds] for s in seeds]),
                np.array([[unsup[name, s, f] for f in folds] for s in seeds]))
    return out


# ---------------------------------------------------------------- output
def _seeds(text):
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    if not seeds:
        raise argparse.ArgumentTypeError(f"--seeds {text!r} names no seed")
    return seeds


def _params(pairs):
    params = {}
    for pair in pairs:
        name, _, value = pair.strip().partition("=")
        if name:
            params[name.strip()] = ast.literal_eval(value.strip())
    return params


def _grid(text):
    """'a=1,b=2;defaults;a=3' to a list of parameter dicts."""
    return [{} if item.strip() == "defaults" else _params(item.split(","))
            for item in text.split(";") if item.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seeds, default=None,
                        help="random states (default 0-2; --inner 0-1)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--inner", action="store_true",
                        help="score --grid by CV inside the training splits")
    parser.add_argument("--oracle", action="store_true",
                        help="score --grid on the test splits (diagnostic)")
    parser.add_argument("--grid", type=_grid, default=[{}],
                        help='settings to compare, e.g. "defaults;'
                             'supervision_weight=10,input_noise=0.1"')
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    variant = "inner" if args.inner else "oracle" if args.oracle else None
    with _report.report(args.save, device="cpu", threads=1, variant=variant):
        run(args)


def run(args):
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    seeds = args.seeds or ([0, 1] if args.inner else [0, 1, 2])
    base = _params(args.set)
    start = time.perf_counter()
    kind = ("inner CV (inside the training splits)" if args.inner else
            "test splits" + (" (oracle: chosen on them)" if args.oracle else ""))
    print(f"# {kind}; seeds {seeds}; n_components=16, defaults"
          + (f" with {base}" if base else "") + "; one torch thread per job")
    results = margins(names, seeds, args.grid, inner=args.inner, jobs=args.jobs,
                      base=base)
    header = " | ".join(names)
    print(f"| setting | {header} | mean | min |")
    print("|---|" + "---|" * (len(names) + 2))
    for index, setting in enumerate(args.grid):
        cells, means = [], []
        for name in names:
            sup, unsup = results[index, name]
            per_seed = 100 * (sup - unsup).mean(axis=1)
            means.append(per_seed.mean())
            spread = f" ± {per_seed.std(ddof=1):.2f}" if len(seeds) > 1 else ""
            cells.append(f"{unsup.mean():.3f} → {sup.mean():.3f} "
                         f"({per_seed.mean():+.2f}{spread})")
        label = ", ".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
        print(f"| {label} | " + " | ".join(cells)
              + f" | {np.mean(means):+.2f} | {min(means):+.2f} |")
    if not args.inner:
        for index, setting in enumerate(args.grid):
            label = ", ".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
            print(f"# {label}, margin per seed: " + "; ".join(
                f"{name} " + ", ".join(
                    f"{100 * m:+.1f}" for m in np.subtract(
                        *results[index, name]).mean(axis=1))
                for name in names))
    print("# cells: unsupervised → supervised accuracy (margin in points ± "
          f"std over seeds); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
