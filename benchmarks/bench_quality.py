"""Quality of each representation on real data that ships with the packages.

The suite for choosing defaults (``STYLE.md``: "Defaults are chosen on several
data sets"). Four data sets, none downloaded, each with a fixed train/test
split (the split never depends on ``--seeds``):

* ``digits``: scikit-learn's ``load_digits`` (8x8), divided by 16, stratified
  70/30 split (``random_state=0``); 10 classes.
* ``textures``: 24x24 grayscale patches, 2x2 block-averaged to 12x12 (144
  features), cut at random positions from scikit-image's ``brick``, ``grass``,
  ``gravel``, ``moon``, ``coins``, ``cell`` and ``camera``, in [0, 1],
  labelled by source image (7 classes). Training patches lie wholly in the
  left half of each image, test patches in the right half, so overlapping
  patches never leak across the split.
* ``faces``: ``skimage.data.lfw_subset()`` (200 images 25x25 in [0, 1]; the
  first 100 are faces, the last 100 non-faces), face vs non-face, stratified
  50/50 split (``random_state=0``).
* ``patches`` (unsupervised only): 8x8 grayscale patches in [0, 1] from
  scikit-learn's ``load_sample_images()`` (china, flower) and scikit-image's
  ``astronaut``, ``chelsea`` and ``coffee``; training patches from the left
  half of each image, test patches from the right half.

Training rows are capped at ``--max-train`` (default 2000) and test rows at
``--max-test`` (default 1000) per data set, by a fixed stratified subsample.

Representations, all at the same width ``--n-components`` (default 16), each
with the library's defaults except ``n_components`` and
``random_state=seed``:

* ``raw``: the pixels themselves (no reconstruction, no fit);
* ``PCA``: ``sklearn.decomposition.PCA(svd_solver="full")``, the exact optimum;
* ``AE``: ``AutoencoderTransformer``;
* ``AE linear``: ``AutoencoderTransformer(hidden_layer_sizes=())``, which
  can at best reach PCA;
* ``AE deep`` (only when ``--representations`` names it):
  ``AutoencoderTransformer(hidden_layer_sizes=(1000, 500, 250))``; on MNIST
  see ``bench_deep_autoencoder.py``;
* ``VAE``: ``VAETransformer`` (Gaussian likelihood, learned noise variance);
* ``DL``: ``DictionaryLearner`` fit without labels;
* ``DL sup``: ``DictionaryLearner`` fit with the labels (labelled sets only).

Reported on the held-out rows, mean +- std (ddof=1) over the seeds:

* ``MSE``: mean squared reconstruction error per pixel,
  ``inverse_transform(transform(X))`` (for the VAE: the decoder's mean at the
  posterior mean), and its ratio to PCA's;
* ``acc``: accuracy of ``representation -> StandardScaler ->
  LogisticRegression(max_iter=2000)`` fit on the training rows (the
  representation is fit once, then the scaler and classifier on its codes,
  which is what ``Pipeline.fit`` does);
* ``ELBO``: the VAE's ``score`` (mean ELBO per sample, nats);
* ``fit s``: wall-clock seconds of the representation's ``fit``.

Run::

    python benchmarks/bench_quality.py               # full (a few minutes)
    python benchmarks/bench_quality.py --quick       # smoke run (< 1 min)
    python benchmarks/bench_quality.py --seeds 0-4 --datasets digits,faces
    python benchmarks/bench_quality.py --save       # the docs' report
"""

import os

# Idle OpenMP threads sleep instead of spinning. On 2 cores shared with other
# work (load average ~5), a spinning 2-thread torch made a small AE fit
# 50-130x slower (17-44 s instead of 0.3-0.5 s). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sklearn_replearn import AutoencoderTransformer, DictionaryLearner, VAETransformer

# The suite's data and splits live in the package (the tests use them too);
# supervised_margin.py and bench_dictionary.py reach them through this script.
from sklearn_replearn.datasets._suite import (  # noqa: F401
    DATA_SEED,
    LOADERS,
    PATCH_IMAGES,
    TEXTURE_IMAGES,
    load,
)
from sklearn_replearn.datasets._suite import block_mean as _block_mean  # noqa: F401
from sklearn_replearn.datasets._suite import gray as _gray  # noqa: F401
from sklearn_replearn.datasets._suite import (  # noqa: F401
    patches_from_halves as _patches_from_halves,
)

DATASETS = ("digits", "textures", "faces", "patches")
REPRESENTATIONS = ("raw", "PCA", "AE", "AE linear", "AE deep", "VAE", "DL",
                   "DL sup")
# Run unless --representations names them (the deep AE is slow on 2 cores).
OPT_IN = ("AE deep",)
DEEP_SHAPE = (1000, 500, 250)  # Hinton & Salakhutdinov (2006)


# ------------------------------------------------------- representations
def make(rep, n_components, seed):
    if rep == "PCA":
        # The exact solver: the bound the autoencoders are held to is PCA's
        # optimum, which the randomised solver misses by up to ~0.1%.
        return PCA(n_components=n_components, svd_solver="full")
    if rep == "AE":
        return AutoencoderTransformer(n_components=n_components, random_state=seed)
    if rep == "AE linear":
        return AutoencoderTransformer(n_components=n_components,
                                      hidden_layer_sizes=(), random_state=seed)
    if rep == "AE deep":
        return AutoencoderTransformer(n_components=n_components,
                                      hidden_layer_sizes=DEEP_SHAPE,
                                      random_state=seed)
    if rep == "VAE":
        return VAETransformer(n_components=n_components, random_state=seed)
    return DictionaryLearner(n_components=n_components, random_state=seed)


def evaluate(rep, data, n_components, seed):
    """One fit of one representation: a dict of held-out measures."""
    X_train, X_test, y_train, y_test = data
    out = {}
    if rep == "raw":
        codes_train, codes_test = X_train, X_test
    else:
        model = make(rep, n_components, seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            model.fit(X_train, y_train if rep == "DL sup" else None)
            out["fit s"] = time.perf_counter() - start
        out["warnings"] = sorted({w.category.__name__ for w in caught})
        out["n_iter"] = getattr(model, "n_iter_", None)
        codes_train, codes_test = model.transform(X_train), model.transform(X_test)
        reconstruction = model.inverse_transform(codes_test)
        out["MSE"] = float(np.mean((reconstruction - X_test) ** 2))
        out["zero codes"] = float(np.mean(np.all(codes_test == 0, axis=1)))
        if rep == "VAE":
            out["ELBO"] = model.score(X_test)
    if y_train is not None:
        classifier = make_pipeline(StandardScaler(),
                                   LogisticRegression(max_iter=2000))
        classifier.fit(codes_train, y_train)
        out["acc"] = classifier.score(codes_test, y_test)
    return out


# ---------------------------------------------------------------- report
def _mean_std(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    mean, std = np.mean(values), np.std(values, ddof=1)
    return f"{mean:{fmt}} ± {std:{fmt}}"


def _seeds(text):
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one seed, at most 300 training rows")
    parser.add_argument("--seeds", type=_seeds, default=None,
                        help="random states, e.g. 0-2 or 0,3,7 (default 0-2)")
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help="comma-separated subset of " + ",".join(DATASETS))
    parser.add_argument("--representations",
                        default=",".join(r for r in REPRESENTATIONS
                                         if r not in OPT_IN),
                        help="comma-separated subset of "
                        + ",".join(REPRESENTATIONS))
    parser.add_argument("--n-components", type=int, default=16)
    parser.add_argument("--max-train", type=int, default=None,
                        help="training rows per data set (default 2000)")
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default 2)")
    # Imported here: the tests load this file by path, without the
    # benchmarks folder on sys.path (a script's own folder is on it).
    import _report

    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    datasets = [name.strip() for name in args.datasets.split(",") if name.strip()]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {DATASETS}")
    chosen = {name.strip() for name in args.representations.split(",")}
    unknown = sorted(chosen - set(REPRESENTATIONS) - {""})
    if unknown:
        parser.error(f"unknown representation(s) {unknown}; choose from "
                     f"{REPRESENTATIONS}")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    max_train = args.max_train or (300 if args.quick else 2000)
    torch.set_num_threads(args.threads)
    # numpy/scipy's OpenBLAS (PCA, StandardScaler, LogisticRegression) on one
    # thread: its 2 threads spin too, and on shared cores made a 300x144 PCA
    # take 0.1-2.8 s instead of 0.01 s. The data here are small.
    threadpool_limits(1, user_api="blas")

    with _report.report(args.save, device="cpu",
                        variant="quick" if args.quick else None):
        run(args, datasets, chosen, seeds, max_train)


def run(args, datasets, chosen, seeds, max_train):
    run_start = time.perf_counter()
    print(f"# OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, BLAS 1 "
          f"thread, cuda available: {torch.cuda.is_available()}")
    print(f"# width {args.n_components} for every representation; seeds "
          f"{seeds}; training rows capped at {max_train}, test rows at "
          f"{args.max_test}; library defaults otherwise")

    rows, facts = [], []
    for name in datasets:
        data = load(name, max_train, args.max_test)
        X_train, X_test, y_train, y_test = data
        fact = (f"{name}: train {X_train.shape}, test {X_test.shape}, "
                f"values in [{X_train.min():.2f}, {X_train.max():.2f}]")
        if y_train is not None:
            counts = np.bincount(y_test)
            fact += (f", {len(np.unique(y_train))} classes, majority-class "
                     f"test accuracy {counts.max() / counts.sum():.3f}")
        facts.append(fact)
        reps = [r for r in REPRESENTATIONS
                if (r in chosen or r == "PCA")
                and (y_train is not None or r not in ("raw", "DL sup"))]
        results = {rep: [evaluate(rep, data, args.n_components, seed)
                         for seed in seeds] for rep in reps}
        pca_mse = np.mean([r["MSE"] for r in results["PCA"]])
        for rep in reps:
            runs = results[rep]
            get = [[r.get(key) for r in runs]
                   for key in ("MSE", "acc", "ELBO", "fit s")]
            ratio = [None if m is None else m / pca_mse for m in get[0]]
            notes = sorted({w for r in runs for w in r.get("warnings", [])})
            n_iter = [r["n_iter"] for r in runs if r.get("n_iter") is not None]
            if n_iter:
                notes.append("epochs " + "/".join(str(n) for n in n_iter))
            zero = np.mean([r.get("zero codes", 0.0) for r in runs])
            if zero > 0:
                notes.append(f"{zero:.1%} all-zero test codes")
            rows.append((name, rep, _mean_std(get[0], ".5f"),
                         _mean_std(ratio, ".2f"), _mean_std(get[1], ".3f"),
                         _mean_std(get[2], ".1f"), _mean_std(get[3], ".2f"),
                         ", ".join(notes)))
        print(f"# done {name} after {time.perf_counter() - run_start:.0f} s",
              file=sys.stderr, flush=True)

    for fact in facts:
        print("# " + fact)
    print("| data set | representation | test MSE | / PCA | test accuracy | "
          "VAE test ELBO | fit s | notes |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
