"""Choose the autoencoder's regularisation defaults by nested cross-validation.

The candidates (weight decay, dropout, denoising, early stopping and its
patience) are scored on each quality-suite set (``bench_quality.py``:
digits, textures, faces, patches) by an inner K-fold on the set's training
rows, repeated with other shuffles (``--repeats``; each fit of a repeat has
its own model seed): held-out reconstruction MSE relative to PCA at the same
width, fitted on the same inner fold. The default is the candidate with the
lowest mean inner ratio across the sets (each set counts once, whatever its
size), if it beats the current default by more than 1%; otherwise the
default stays. The outer
test split, never seen by the choice, then reports the chosen candidate
beside every other one.

Usage::

    python benchmarks/bench_regularisation.py [--folds 2] [--repeats 2]
        [--max-train 1000] [--sets digits,textures,faces,patches]
        [--hidden 128] [--threads 2]
"""

import argparse
import time
import warnings

import _report
import numpy as np
import torch
from bench_quality import load
from sklearn.decomposition import PCA
from sklearn.model_selection import RepeatedKFold

from sklearn_replearn import AutoencoderTransformer

DEFAULT = "defaults"
CANDIDATES = {
    DEFAULT: dict(),
    "wd 1e-5": dict(weight_decay=1e-5),
    "wd 1e-4": dict(weight_decay=1e-4),
    "wd 1e-3": dict(weight_decay=1e-3),
    "denoising 0.1": dict(denoising=0.1),
    "no early stopping": dict(early_stopping=False),
    "patience 10": dict(n_iter_no_change=10),
    "dropout 0.1": dict(dropout=0.1),
    "dropout 0.2": dict(dropout=0.2),
}
WIDTH = 16



def _mse(model, X):
    return float(np.mean((model.inverse_transform(model.transform(X)) - X) ** 2))


def _ratio(params, hidden, X_fit, X_eval, seed):
    model = AutoencoderTransformer(n_components=WIDTH, hidden_layer_sizes=hidden,
                                   random_state=seed, **params).fit(X_fit)
    return _mse(model, X_eval) / _mse(PCA(WIDTH, svd_solver="full").fit(X_fit), X_eval)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits,textures,faces,patches")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2,
                        help="inner K-folds, each with other shuffles and seeds")
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--hidden", default="128",
                        help="hidden layer sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    hidden = tuple(int(h) for h in args.hidden.split(","))
    with _report.report(args.save, threads=args.threads):
        run(args, hidden)


def run(args, hidden):
    print(f"# AutoencoderTransformer width {WIDTH}, hidden {hidden}; inner "
          f"{args.folds}-fold x {args.repeats} on at most {args.max_train} "
          "training rows; "
          "ratios are held-out MSE / PCA's at the same width")
    sets = args.sets.split(",")
    inner = {name: {} for name in CANDIDATES}
    outer = {name: {} for name in CANDIDATES}
    start = time.perf_counter()
    for data_name in sets:
        X_train, X_test = load(data_name, args.max_train, 1000)[:2]
        folds = list(RepeatedKFold(n_splits=args.folds, n_repeats=args.repeats,
                                   random_state=0).split(X_train))
        for name, params in CANDIDATES.items():
            inner[name][data_name] = np.mean([
                _ratio(params, hidden, X_train[fit], X_train[held], seed=k)
                for k, (fit, held) in enumerate(folds)])
            outer[name][data_name] = _ratio(params, hidden, X_train, X_test, 0)
        print(f"# done {data_name} after {time.perf_counter() - start:.0f} s",
              flush=True)
    # A change of default must pay: another candidate replaces the current
    # default only if its mean inner ratio is lower by more than 1%.
    means = {name: np.mean(list(inner[name].values())) for name in CANDIDATES}
    best = min(CANDIDATES, key=means.get)
    chosen = best if means[best] < 0.99 * means[DEFAULT] else DEFAULT
    header = f"{'candidate':28}" + "".join(f"{s:>10}" for s in sets) + f"{'mean':>8}"
    for title, table in (("inner CV (chooses)", inner), ("outer test", outer)):
        print(f"\n## {title}: MSE / PCA")
        print(header)
        for name in CANDIDATES:
            row = [table[name][s] for s in sets]
            mark = "  <- chosen" if name == chosen else ""
            print(f"{name:28}" + "".join(f"{v:10.3f}" for v in row)
                  + f"{np.mean(row):8.3f}{mark}")
    total = time.perf_counter() - start
    print(f"\n# chosen by inner CV: {chosen}; {total:.0f} s")


if __name__ == "__main__":
    main()
