"""The tour: representation learners side by side on sklearn's digits.

``python -m sklearn_replearn`` fits each representation on 75% of the 8x8
digits (scaled to [0, 1]), follows it with ``StandardScaler`` and
``LogisticRegression``, and prints, for the held-out 25%: the reconstruction
error (mean squared error of ``inverse_transform(transform(X))``), the
accuracy of the pipeline, and the time to fit it. Raw pixels are the baseline.
No download is needed: the digits ship with scikit-learn.
"""

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ._autoencoder import AutoencoderTransformer
from ._dictionary import DictionaryLearner
from ._vae import VAETransformer

__all__ = ["TOUR_MODELS", "format_table", "main", "run_tour", "write_figures"]


def _pca(n_components, quick, random_state):
    return PCA(n_components=n_components, random_state=random_state)


def _autoencoder(n_components, quick, random_state):
    return AutoencoderTransformer(
        n_components=n_components,
        max_iter=20 if quick else 200,
        random_state=random_state,
        device="cpu",
    )


def _vae(n_components, quick, random_state):
    return VAETransformer(
        n_components=n_components,
        likelihood="bernoulli",  # digits scaled to [0, 1]
        max_iter=20 if quick else 200,
        random_state=random_state,
        device="cpu",
    )


def _dictionary(supervised):
    def factory(n_components, quick, random_state):
        learner = DictionaryLearner(
            n_components=n_components, alpha=0.1, max_iter=3 if quick else 30,
            random_state=random_state, device="cpu",
        )
        # supervision_weight=0 ignores the labels the Pipeline passes to fit.
        return learner if supervised else learner.set_params(supervision_weight=0.0)

    return factory


# (row label, factory(n_components, quick, random_state) -> transformer).
# A factory returns None for the raw-pixel baseline.
TOUR_MODELS = [
    ("raw pixels", lambda n_components, quick, random_state: None),
    ("PCA", _pca),
    ("AutoencoderTransformer", _autoencoder),
    ("VAETransformer", _vae),
    ("DictionaryLearner", _dictionary(supervised=False)),
    ("DictionaryLearner (supervised)", _dictionary(supervised=True)),
]


def run_tour(n_components=16, *, quick=False, random_state=0, log=None):
    """Fit every tour model on digits and measure it on held-out digits.

    Parameters
    ----------
    n_components : int, default=16
        Width of every learned representation.
    quick : bool, default=False
        Train for few epochs (for tests and smoke runs).
    random_state : int, default=0
        Seed of the split and of every model.
    log : callable, default=None
        Called with a progress line before each model (e.g. ``print``).

    Returns
    -------
    rows : list of dict
        One dict per model: ``model``, ``reconstruction_mse`` (None for raw
        pixels), ``accuracy``, ``fit_seconds`` and ``estimator`` (the fitted
        representation, None for raw pixels).
    X_test, y_test : ndarray
        The held-out digits the rows were measured on.

    Examples
    --------
    >>> from sklearn_replearn._tour import run_tour
    >>> rows, X_test, y_test = run_tour(n_components=4, quick=True)
    >>> [row["model"] for row in rows][:2]
    ['raw pixels', 'PCA']
    """
    digits = load_digits()
    X = digits.data / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, stratify=digits.target,
        random_state=random_state,
    )
    rows = []
    for index, (label, factory) in enumerate(TOUR_MODELS, start=1):
        if log is not None:
            log(f"[{index}/{len(TOUR_MODELS)}] {label} ...")
        representation = factory(n_components, quick, random_state)
        steps = [] if representation is None else [representation]
        pipeline = make_pipeline(*steps, StandardScaler(),
                                 LogisticRegression(max_iter=2000))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - start
        error = None
        if representation is not None:
            codes = representation.transform(X_test)
            reconstruction = representation.inverse_transform(codes)
            error = float(np.mean((reconstruction - X_test) ** 2))
        rows.append({
            "model": label,
            "reconstruction_mse": error,
            "accuracy": float(pipeline.score(X_test, y_test)),
            "fit_seconds": fit_seconds,
            "estimator": representation,
        })
    return rows, X_test, y_test


def write_figures(rows, X, y, directory):
    """Write PNG figures of each fitted representation into ``directory``.

    For each model: its components, reconstructions of held-out digits, its
    latent space coloured by digit, its loss curve and generated samples, as
    far as the model has them. Returns the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def save(display, name):
        path = directory / f"{name}.png"
        display.figure_.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(display.figure_)
        written.append(path)

    for row in rows:
        estimator = row["estimator"]
        if estimator is None:
            continue
        slug = re.sub(r"\W+", "_", row["model"].lower()).strip("_")
        if hasattr(estimator, "components_"):
            components = plotting.ComponentsDisplay.from_estimator(
                estimator, max_components=32)
            save(components, f"components_{slug}")
        if hasattr(estimator, "inverse_transform"):
            save(plotting.ReconstructionDisplay.from_estimator(estimator, X),
                 f"reconstructions_{slug}")
        save(plotting.LatentSpaceDisplay.from_estimator(estimator, X, y),
             f"latent_{slug}")
        if hasattr(estimator, "loss_curve_"):
            save(plotting.LossCurveDisplay.from_estimator(estimator), f"loss_{slug}")
        if hasattr(estimator, "sample"):
            save(plotting.SamplesDisplay.from_estimator(estimator, random_state=0),
                 f"samples_{slug}")
    return written


def format_table(rows, n_components):
    """The tour's results as a Markdown table."""
    lines = [
        f"| model (n_components={n_components}) | held-out reconstruction MSE "
        "| held-out accuracy | fit s |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        error = "-" if row["reconstruction_mse"] is None else (
            f"{row['reconstruction_mse']:.4f}")
        lines.append(f"| {row['model']} | {error} | {row['accuracy']:.3f} "
                     f"| {row['fit_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_replearn",
        description="Tour of representation learners on sklearn's 8x8 digits: each "
        "representation, then StandardScaler + LogisticRegression; prints held-out "
        "reconstruction error, accuracy and fit time. Subcommand: 'extract' (CNN "
        "features from image files).",
    )
    parser.add_argument("--n-components", type=int, default=16,
                        help="width of every representation (default 16)")
    parser.add_argument("--quick", action="store_true",
                        help="few training epochs (a smoke run)")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="also write PNG figures (components, reconstructions, "
                        "latent spaces, loss curves, samples) into DIR; needs "
                        "matplotlib (the 'plot' extra)")
    args = parser.parse_args(argv)
    if args.n_components < 1:
        parser.error(f"--n-components must be >= 1, got {args.n_components}")

    def log(line):
        print(line, file=sys.stderr, flush=True)

    rows, X_test, y_test = run_tour(args.n_components, quick=args.quick,
                                    random_state=args.random_state, log=log)
    print(format_table(rows, args.n_components))
    if args.plot:
        log(f"writing figures to {args.plot} ...")
        for path in write_figures(rows, X_test, y_test, args.plot):
            log(f"  {path}")
    return 0
