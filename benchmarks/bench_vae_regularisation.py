"""Choose the VAE's early-stopping and regularisation defaults by nested CV.

The candidates (early-stopping patience ``n_iter_no_change``, weight decay,
validation share) are scored on each quality-suite set (``bench_quality.py``:
digits, textures, faces, patches) by an inner K-fold on the set's training
rows: the held-out negative ELBO per row (``-VAETransformer.score``, nats; the
VAE's own objective, lower is better). Sets differ in their number of features
and so in the size of their ELBO, so the choice averages each candidate's
difference from the current default in nats per feature (a per-feature
difference does not depend on the data's units: a change of units shifts
every model's log-density by the same amount). The default is the candidate
with the lowest mean difference, if it beats the current default by more than
1%: its held-out likelihood per feature (geometric mean) is higher by more than
1%, a difference below ``-log(1.01)`` nats per feature. Candidates whose fits
stop at the epoch budget with a ``ConvergenceWarning`` cannot be chosen (the
defaults must train to convergence). The outer test split, never seen by the
choice, then reports every candidate, with the held-out reconstruction MSE
relative to PCA at the same width, the fit time, the epochs trained and the
warnings of the outer fit.

Usage::

    python benchmarks/bench_vae_regularisation.py [--folds 2] [--max-train 1000]
        [--sets digits,textures,faces,patches] [--threads 1]
"""

import os

# Idle OpenMP threads sleep instead of spinning (see bench_quality.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import time
import warnings

import _report
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from sklearn_replearn import VAETransformer
from sklearn_replearn.datasets._suite import load

DEFAULT = "patience 50, 10k (default)"
# "steps": the epoch budget's gradient steps (max_iter="auto" makes 10,000).
# A short patience stops long before that budget; a long one can meet a
# 5,000-step budget on a thousand rows.
CANDIDATES = {
    DEFAULT: dict(n_iter_no_change=50, steps=10_000),
    "patience 10, 5k steps": dict(n_iter_no_change=10, steps=5_000),
    "patience 20, 10k steps": dict(n_iter_no_change=20, steps=10_000),
    "patience 30, 10k steps": dict(n_iter_no_change=30, steps=10_000),
    "wd 1e-5": dict(weight_decay=1e-5, steps=10_000),
    "validation 0.2": dict(validation_fraction=0.2, steps=10_000),
}
WIDTH = 16
# "Beats by more than 1%": a per-feature held-out likelihood 1% higher.
THRESHOLD = -math.log(1.01)


def _max_iter(model, n_rows, steps):
    """max_iter="auto"'s epochs for ``steps`` gradient steps (20 to 2,000)."""
    n_train = n_rows - math.ceil(model.validation_fraction * n_rows)
    per_epoch = math.ceil(n_train / model.batch_size)
    return min(max(math.ceil(steps / per_epoch), 20), 2_000)


def _fit(params, X_fit, X_eval, seed):
    """One fit: held-out -ELBO per row, MSE / PCA, seconds, epochs, warned."""
    params = dict(params)
    steps = params.pop("steps")
    model = VAETransformer(n_components=WIDTH, random_state=seed, device="cpu",
                           **params)
    model.set_params(max_iter=_max_iter(model, len(X_fit), steps))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X_fit)
        seconds = time.perf_counter() - start
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    error = np.mean((model.inverse_transform(model.transform(X_eval)) - X_eval) ** 2)
    pca = PCA(WIDTH, svd_solver="full").fit(X_fit)
    pca_error = np.mean((pca.inverse_transform(pca.transform(X_eval)) - X_eval) ** 2)
    return dict(nelbo=-model.score(X_eval), ratio=float(error / pca_error),
                seconds=seconds, epochs=model.n_iter_, warned=warned)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits,textures,faces,patches")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # PCA's BLAS on one thread: its spinning threads slow shared cores.
    threadpool_limits(1, user_api="blas")
    with _report.report(args.save, threads=args.threads):
        run(args)


def _table(title, sets, rows, fmt, chosen, extra=None):
    print(f"\n## {title}")
    print(f"{'candidate':28}" + "".join(f"{s:>10}" for s in sets)
          + (f"{extra[0]:>10}" if extra else ""))
    for name in CANDIDATES:
        tail = f"{extra[1][name]:10.4f}" if extra else ""
        mark = "  <- chosen" if name == chosen else ""
        print(f"{name:28}" + "".join(fmt(rows[name][s]) for s in sets)
              + tail + mark)


def run(args):
    print(f"# VAETransformer width {WIDTH}, defaults otherwise; inner "
          f"{args.folds}-fold on at most {args.max_train} training rows, outer "
          "test split; -ELBO is minus score() (nats per row, lower is better)")
    sets = args.sets.split(",")
    inner = {name: {} for name in CANDIDATES}
    outer = {name: {} for name in CANDIDATES}
    n_features = {}
    start = time.perf_counter()
    for data_name in sets:
        X_train, X_test = load(data_name, args.max_train, 1000)[:2]
        n_features[data_name] = X_train.shape[1]
        folds = list(KFold(args.folds, shuffle=True, random_state=0).split(X_train))
        for name, params in CANDIDATES.items():
            fits = [_fit(params, X_train[fit], X_train[held], seed=k)
                    for k, (fit, held) in enumerate(folds)]
            inner[name][data_name] = {
                key: (any(f[key] for f in fits) if key == "warned"
                      else float(np.mean([f[key] for f in fits])))
                for key in fits[0]}
            outer[name][data_name] = _fit(params, X_train, X_test, 0)
        print(f"# done {data_name} after {time.perf_counter() - start:.0f} s",
              flush=True)
    # Each candidate's mean over the sets of its inner -ELBO minus the
    # default's, in nats per feature (each set counts once).
    def gain(table, name):
        return float(np.mean([(table[name][s]["nelbo"] - table[DEFAULT][s]["nelbo"])
                              / n_features[s] for s in sets]))

    inner_gain = {name: gain(inner, name) for name in CANDIDATES}
    outer_gain = {name: gain(outer, name) for name in CANDIDATES}
    eligible = [name for name in CANDIDATES
                if not any(inner[name][s]["warned"] or outer[name][s]["warned"]
                           for s in sets)]
    best = min(eligible, key=inner_gain.get, default=DEFAULT)
    chosen = best if inner_gain[best] < THRESHOLD else DEFAULT

    def nelbo(cell):
        return f"{cell['nelbo']:9.2f}" + ("!" if cell["warned"] else " ")

    delta = "d/feature"
    _table("inner CV (chooses): held-out -ELBO per row; d/feature: mean "
           "difference from the default in nats per feature (! = a "
           "ConvergenceWarning)", sets, inner, nelbo, chosen,
           (delta, inner_gain))
    _table("inner CV: held-out MSE / PCA", sets, inner,
           lambda cell: f"{cell['ratio']:10.3f}", chosen)
    _table("outer test: held-out -ELBO per row", sets, outer, nelbo, chosen,
           (delta, outer_gain))
    _table("outer test: held-out MSE / PCA", sets, outer,
           lambda cell: f"{cell['ratio']:10.3f}", chosen)
    _table("outer fit: seconds / epochs", sets, outer,
           lambda cell: f"{cell['seconds']:5.1f}/{cell['epochs']:4d}", chosen)
    total = time.perf_counter() - start
    print(f"\n# chosen by inner CV: {chosen} (threshold {THRESHOLD:.4f} nats per "
          f"feature; not eligible: {sorted(set(CANDIDATES) - set(eligible))}); "
          f"{total:.0f} s")


if __name__ == "__main__":
    main()
