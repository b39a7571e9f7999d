"""How much supervised codes help a classifier, over several random states.

Issue 5's accuracy target: on digits scaled to [0, 1],
``Pipeline([DictionaryLearner(n_components=64), StandardScaler(),
LogisticRegression()])`` fit with labels should beat the same pipeline with
unsupervised codes by at least 2 points of 5-fold (unshuffled)
``cross_val_score`` accuracy. One fit's margin depends on its seed (minibatch
order, initial atoms, input noise) by about +-0.4 points, so this script runs
the test's pipeline (``tests/test_dictionary.py``) for several
``random_state`` values and prints each margin, their mean and their worst.

``--inner`` instead prints the score used to choose the supervised defaults
without looking at the outer test folds: for each of the 5 outer training
sets, the mean accuracy of 3-fold unshuffled CV inside it, of the supervised
pipeline only (nested cross-validation).

Seeds run in parallel worker processes, each with one torch thread (the
test's setting). Usage::

    python benchmarks/supervised_margin.py [--seeds 0-9] [--jobs 2] [--inner]
        [--set name=value ...]

``--set`` overrides a ``DictionaryLearner`` parameter of both pipelines,
e.g. ``--set alpha=0.5`` (the unsupervised one keeps
``supervision_weight=0``; ``--set supervision_weight=30`` changes only the
supervised one).
"""

import argparse
import ast
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def _pipeline(random_state, **params):
    from sklearn_replearn import DictionaryLearner

    params = {"n_components": 64, "random_state": random_state, "device": "cpu",
              **params}
    return Pipeline([
        ("codes", DictionaryLearner(**params)),
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(max_iter=1000)),
    ])


def _cv_accuracy(X, y, random_state, cv, **params):
    import torch

    # One thread per worker process: the test's setting, and no
    # oversubscription when seeds run in parallel.
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_score(_pipeline(random_state, **params), X, y,
                               cv=cv).mean()


def margin(X, y, random_state, params):
    """(unsupervised, supervised) 5-fold accuracy of the test's pipeline."""
    unsupervised = _cv_accuracy(X, y, random_state, 5,
                                **{**params, "supervision_weight": 0.0})
    supervised = _cv_accuracy(X, y, random_state, 5, **params)
    return unsupervised, supervised


def inner_score(X, y, random_state, params):
    """Mean over the 5 outer training sets of their inner 3-fold accuracy."""
    return float(np.mean([
        _cv_accuracy(X[train], y[train], random_state, 3, **params)
        for train, _ in KFold(5).split(X)
    ]))


def _seeds(text):
    """'0-9' or '0,2,5' to a list of ints."""
    if "-" in text:
        first, last = text.split("-")
        seeds = list(range(int(first), int(last) + 1))
    else:
        seeds = [int(seed) for seed in text.split(",")]
    if not seeds:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r} is an empty range; write it low-high, e.g. 0-9")
    return seeds


def _params(pairs):
    params = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        params[name] = ast.literal_eval(value)
    return params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=_seeds, default=_seeds("0-4"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--inner", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    params = _params(args.set)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    run = inner_score if args.inner else margin
    results = Parallel(n_jobs=args.jobs)(
        delayed(run)(X, y, seed, params) for seed in args.seeds)
    print("supervised DictionaryLearner: defaults"
          + (f" with {params}" if params else ""))
    if args.inner:
        print("| random_state | inner accuracy |\n|---|---|")
        for seed, score in zip(args.seeds, results):
            print(f"| {seed} | {score:.4f} |")
        print(f"| mean | {np.mean(results):.4f} |")
        return
    print("| random_state | unsupervised | supervised | margin, points |")
    print("|---|---|---|---|")
    margins = []
    for seed, (unsupervised, supervised) in zip(args.seeds, results):
        margins.append(100 * (supervised - unsupervised))
        print(f"| {seed} | {unsupervised:.4f} | {supervised:.4f} | "
              f"{margins[-1]:+.2f} |")
    print(f"mean margin {np.mean(margins):+.2f} points, worst "
          f"{min(margins):+.2f}, {sum(m >= 2 for m in margins)} of "
          f"{len(margins)} seeds at 2 points or more")


if __name__ == "__main__":
    main()
