"""The tour: representation learners side by side on data that ships offline.

``python -m sklearn_replearn`` (``--data digits``, the default) fits each
representation on 75% of the 8x8 digits (scaled to [0, 1]), follows it with
``StandardScaler`` and ``LogisticRegression``, and prints, for the held-out
25%: the reconstruction error (mean squared error of
``inverse_transform(transform(X))``), the accuracy of the pipeline, and the
time to fit it. Raw pixels are the baseline. One of the representations is a
small CNN trained from random weights on the digits' labels
(``PretrainedCNNFeatures`` with every block fine-tuned), so that its kernels
and feature maps are learned ones.

``python -m sklearn_replearn --data patches`` learns on natural-image patches
(:func:`load_patches`): a dictionary, a sparse autoencoder and, for contrast,
a plain one. It prints their held-out reconstruction error, how localised
their filters are (:func:`filter_localisation`, with random filters for
reference) and their fit time. ``--plot DIR`` writes the figures of either
part. No download is needed: the digits and the photos ship with
scikit-learn and scikit-image.
"""

import re
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

from ._utils import seeded
from .autoencoder import AutoencoderTransformer, VAETransformer
from .datasets import filter_localisation, load_patches
from .dictionary import DictionaryLearner
from .vision import PretrainedCNNFeatures

__all__ = [
    "PATCH_MODELS",
    "TOUR_MODELS",
    "format_patch_table",
    "format_table",
    "run_patch_tour",
    "run_tour",
    "write_figures",
    "write_patch_figures",
]


# ----------------------------------------------------------------- digits
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
        # A short patience keeps the tour within about half a minute (the
        # default, 50, trains all 200 epochs: several times longer).
        n_iter_no_change=10,
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


# The node of the small CNN whose output the tour shows as feature maps: the
# ReLU after the first convolution.
CNN_FEATURE_MAPS_LAYER = "1"


def _small_cnn(n_components, quick, random_state):
    """A two-convolution CNN, trained from random weights on the labels.

    ``PretrainedCNNFeatures`` with ``weights=None`` keeps the module's random
    initialisation (seeded here by ``random_state``), and
    ``fine_tune_layers=2`` trains both convolutions with a temporary linear
    head; its features are the ``n_components`` channels of the second
    convolution, averaged over the image. The 8x8 digits are resized to 16x16
    so that the 5x5 kernels and their feature maps have room.
    """
    from torch import nn

    with seeded(random_state):
        backbone = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, n_components, 3, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(n_components, 10),
        )
    return PretrainedCNNFeatures(
        backbone, weights=None, image_shape=(1, 8, 8), image_size=(16, 16),
        normalize=False, fine_tune_layers=2, max_iter=10 if quick else 20,
        learning_rate=3e-3, batch_size=32,
        random_state=random_state, device="cpu",
    )


# (row label, factory(n_components, quick, random_state) -> transformer).
# A factory returns None for the raw-pixel baseline.
TOUR_MODELS = [
    ("raw pixels", lambda n_components, quick, random_state: None),
    ("PCA", _pca),
    ("AutoencoderTransformer", _autoencoder),
    ("VAETransformer", _vae),
    ("DictionaryLearner", _dictionary(supervised=False)),
    ("DictionaryLearner (supervised)", _dictionary(supervised=True)),
    ("PretrainedCNNFeatures (trained here)", _small_cnn),
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
        pixels and the CNN), ``accuracy``, ``fit_seconds`` and ``estimator``
        (the fitted representation, None for raw pixels).
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
        if hasattr(representation, "inverse_transform"):
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


def _slug(label):
    return re.sub(r"\W+", "_", label.lower()).strip("_")


class _FigureWriter:
    """Saves displays as PNGs into a directory and remembers the paths."""

    def __init__(self, directory):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.written = []

    def save(self, figure, name):
        path = self.directory / f"{name}.png"
        figure.savefig(path, dpi=80, bbox_inches="tight")
        self.plt.close(figure)
        self.written.append(path)


def _kernels_before_and_after(estimator, title):
    """First-layer kernels at initialisation (top) and after training (bottom)."""
    from torch import nn

    from . import plotting

    plt = plotting._pyplot()

    def first_kernels(module):
        conv = next(layer for layer in module.modules()
                    if isinstance(layer, nn.Conv2d))
        weights = conv.weight.detach().cpu().numpy()
        return weights[:, 0].reshape(len(weights), -1), weights.shape[2:]

    # The backbone parameter is the module as given: fit trains a copy.
    initial, shape = first_kernels(estimator.backbone)
    trained, _ = first_kernels(estimator.model_)
    n_kernels = len(trained)
    figure, axes = plt.subplots(2, n_kernels, squeeze=False,
                                figsize=(0.9 * n_kernels, 2.4))
    for row, (kernels, label) in enumerate(
            [(initial, "random init"), (trained, "trained")]):
        plotting.ComponentsDisplay(kernels, image_shape=shape).plot(
            n_cols=n_kernels, ax=axes[row])
        axes[row, 0].set_ylabel(label, fontsize=8)
    figure.suptitle(title)
    return figure


def write_figures(rows, X, y, directory):
    """Write PNG figures of each fitted representation into ``directory``.

    For each model: its components, reconstructions of held-out digits, its
    latent space coloured by digit, its loss curve and generated samples, as
    far as the model has them; for the CNN, its first-layer kernels before
    and after training and the feature maps of the first held-out digit.
    Returns the paths written.
    """
    from . import plotting

    writer = _FigureWriter(directory)

    def save(display, name):
        writer.save(display.figure_, name)

    for row in rows:
        estimator = row["estimator"]
        if estimator is None:
            continue
        slug = _slug(row["model"])
        if hasattr(estimator, "components_"):
            components = plotting.ComponentsDisplay.from_estimator(
                estimator, max_components=32)
            save(components, f"components_{slug}")
        if hasattr(estimator, "inverse_transform"):
            save(plotting.ReconstructionDisplay.from_estimator(estimator, X),
                 f"reconstructions_{slug}")
        if hasattr(estimator, "feature_maps"):
            writer.save(_kernels_before_and_after(
                estimator, "first-layer 5x5 kernels of the small CNN, before and "
                "after training on the digits"),
                f"kernels_{slug}")
            digit = np.asarray(X)[0].reshape(8, 8)
            save(plotting.FeatureMapsDisplay.from_estimator(
                estimator, digit, layer=CNN_FEATURE_MAPS_LAYER, max_maps=16,
                title=f"first-layer feature maps of a held-out {y[0]}"),
                f"feature_maps_{slug}")
        save(plotting.LatentSpaceDisplay.from_estimator(estimator, X, y),
             f"latent_{slug}")
        if hasattr(estimator, "loss_curve_"):
            save(plotting.LossCurveDisplay.from_estimator(estimator), f"loss_{slug}")
        if hasattr(estimator, "sample"):
            save(plotting.SamplesDisplay.from_estimator(estimator, random_state=0),
                 f"samples_{slug}")
    return writer.written


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


# ---------------------------------------------------------------- patches
def _sparse_autoencoder(sparsity):
    def factory(n_components, quick, random_state):
        # One linear layer each way: the encoder's weights are the filters,
        # and with sparsity > 0 the loss is sparse coding's (see the
        # sparsity parameter).
        return AutoencoderTransformer(
            n_components=n_components, hidden_layer_sizes=(), sparsity=sparsity,
            max_iter=5 if quick else 60, learning_rate=3e-3,
            random_state=random_state, device="cpu",
        )

    return factory


def _patch_dictionary(n_components, quick, random_state):
    return DictionaryLearner(
        n_components=n_components, alpha=3.0, max_iter=2 if quick else 20,
        random_state=random_state, device="cpu",
    )


# (row label, factory(n_components, quick, random_state) -> transformer).
PATCH_MODELS = [
    ("AutoencoderTransformer (sparsity=0)", _sparse_autoencoder(0.0)),
    ("AutoencoderTransformer (sparsity=1)", _sparse_autoencoder(1.0)),
    ("DictionaryLearner", _patch_dictionary),
]


def run_patch_tour(n_components=64, *, patch_size=12, quick=False, random_state=0,
                   log=None):
    """Learn filters on natural-image patches and measure them.

    Parameters
    ----------
    n_components : int, default=64
        Number of filters (atoms) of every model.
    patch_size : int, default=12
        Side of the patches (:func:`load_patches`).
    quick : bool, default=False
        Fewer patches and epochs (for tests and smoke runs).
    random_state : int, default=0
        Seeds the patch positions and every model.
    log : callable, default=None
        Called with a progress line before each model.

    Returns
    -------
    rows : list of dict
        A first row for random filters (the reference), then one per model:
        ``model``, ``reconstruction_mse`` (held out, in whitened units: 1 is
        the data's variance), ``localisation`` (mean of
        :func:`filter_localisation` over the filters), ``fit_seconds`` and
        ``estimator``.
    X_test : ndarray
        The held-out whitened patches.
    to_pixels : callable
        Maps whitened rows back to pixel values (see :func:`load_patches`).
    """
    X_train, X_test, to_pixels = load_patches(
        patch_size, 300 if quick else 2000, random_state=random_state)
    shape = (patch_size, patch_size)
    noise = np.random.RandomState(random_state).randn(n_components, patch_size ** 2)
    rows = [{"model": "random filters (reference)", "reconstruction_mse": None,
             "localisation": float(filter_localisation(noise, shape).mean()),
             "fit_seconds": None, "estimator": None}]
    for index, (label, factory) in enumerate(PATCH_MODELS, start=1):
        if log is not None:
            log(f"[{index}/{len(PATCH_MODELS)}] {label} on {len(X_train)} "
                f"{patch_size}x{patch_size} patches ...")
        estimator = factory(n_components, quick, random_state)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(X_train)
        fit_seconds = time.perf_counter() - start
        reconstruction = estimator.inverse_transform(estimator.transform(X_test))
        rows.append({
            "model": label,
            "reconstruction_mse": float(np.mean((reconstruction - X_test) ** 2)),
            "localisation": float(filter_localisation(
                estimator.components_, shape).mean()),
            "fit_seconds": fit_seconds,
            "estimator": estimator,
        })
    return rows, X_test, to_pixels


def format_patch_table(rows, n_components, patch_size=12):
    """The patch tour's results as a Markdown table."""
    lines = [
        f"| model ({n_components} filters, {patch_size}x{patch_size} whitened "
        "patches) | held-out reconstruction MSE | filter localisation | fit s |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        error = "-" if row["reconstruction_mse"] is None else (
            f"{row['reconstruction_mse']:.3f}")
        seconds = "-" if row["fit_seconds"] is None else f"{row['fit_seconds']:.1f}"
        lines.append(f"| {row['model']} | {error} | {row['localisation']:.2f} "
                     f"| {seconds} |")
    return "\n".join(lines)


def write_patch_figures(rows, X_test, to_pixels, directory, patch_size=12):
    """Write the patch tour's figures into ``directory``; returns the paths.

    For each model: its filters (``patches_components_<model>.png``, each
    on its own symmetric scale around zero) and its reconstructions of ten
    held-out patches (drawn among the more contrasted half), shown as pixels
    (``patches_reconstructions_<model>.png``).
    """
    from . import plotting

    writer = _FigureWriter(directory)
    shape = (patch_size, patch_size)
    # Ten held-out patches drawn from the more contrasted half (a flat patch
    # of sky shows nothing).
    contrast = to_pixels(X_test).var(axis=1)
    busy = np.flatnonzero(contrast >= np.median(contrast))
    shown = np.sort(np.random.RandomState(0).choice(busy, 10, replace=False))
    originals = to_pixels(X_test[shown])
    for row in rows:
        estimator = row["estimator"]
        if estimator is None:
            continue
        slug = _slug(row["model"])
        display = plotting.ComponentsDisplay.from_estimator(
            estimator, image_shape=shape, max_components=64, n_cols=16,
            title=f"{row['model']}: filters learned on photo patches")
        writer.save(display.figure_, f"patches_components_{slug}")
        reconstructions = to_pixels(
            estimator.inverse_transform(estimator.transform(X_test[shown])))
        display = plotting.ReconstructionDisplay(
            originals, reconstructions, image_shape=shape,
            title=f"{row['model']}: held-out patches").plot()
        writer.save(display.figure_, f"patches_reconstructions_{slug}")
    return writer.written


# ------------------------------------------------------------ command line
