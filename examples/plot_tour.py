"""
=================================================
Representations of the digits side by side
=================================================

A representation learner turns each sample into a new feature vector. This
example fits several of them on the 8x8 digits, each followed by the same
``StandardScaler`` and ``LogisticRegression`` in a
:class:`~sklearn.pipeline.Pipeline`, exactly where
:class:`~sklearn.decomposition.PCA` would go, and compares, on held-out
digits:

* the accuracy of the pipeline (how useful the features are for a simple
  classifier);
* the reconstruction error of ``inverse_transform(transform(X))`` (how much
  of the image the features keep), for the models that can reconstruct;
* the time to fit.

Raw pixels are the baseline. It is the same comparison as the command
``python -m sklearn_replearn``, with fewer training epochs so that this page
builds in seconds.
"""

# %%
# The data
# --------
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)
from sklearn_replearn.plotting import (
    ComponentsDisplay,
    ReconstructionDisplay,
)

digits = load_digits()
X = digits.data / 16.0  # pixels in [0, 1]
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.25, stratify=digits.target, random_state=0
)
n_components = 16

# %%
# The representations
# -------------------
# Every learned representation has 16 features. The autoencoder and the VAE
# are small MLPs trained for a few dozen epochs; the dictionary learner is
# used twice: unsupervised (``supervision_weight=0`` ignores the labels the
# pipeline passes to ``fit``) and supervised (the labels shape the atoms).
#
# The last one is a small CNN. No pretrained weights are available offline,
# so :class:`~sklearn_replearn.PretrainedCNNFeatures` gets a module with
# random weights (``weights=None``) and trains its two convolutions on the
# labels (``fine_tune_layers=2``, with a temporary linear head that is
# dropped after fitting); its features are the 16 channels of the second
# convolution, max-pooled over the image.
torch.manual_seed(0)  # the CNN's random initial weights
cnn = nn.Sequential(
    nn.Conv2d(1, 16, 5, padding=2),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(16, n_components, 3, padding=1),
    nn.ReLU(),
    nn.AdaptiveMaxPool2d(1),
    nn.Flatten(),
    nn.Linear(n_components, 10),
)
representations = {
    "raw pixels": None,
    "PCA": PCA(n_components=n_components, random_state=0),
    "AutoencoderTransformer": AutoencoderTransformer(
        n_components=n_components, max_iter=40, random_state=0, device="cpu"
    ),
    "VAETransformer": VAETransformer(
        n_components=n_components,
        likelihood="bernoulli",
        max_iter=40,
        random_state=0,
        device="cpu",
    ),
    "DictionaryLearner": DictionaryLearner(
        n_components=n_components,
        alpha=0.1,
        max_iter=10,
        supervision_weight=0.0,
        random_state=0,
        device="cpu",
    ),
    "DictionaryLearner (supervised)": DictionaryLearner(
        n_components=n_components,
        alpha=0.1,
        max_iter=10,
        random_state=0,
        device="cpu",
    ),
    "PretrainedCNNFeatures (trained here)": PretrainedCNNFeatures(
        cnn,
        weights=None,
        image_shape=(1, 8, 8),
        image_size=(16, 16),
        normalize=False,
        fine_tune_layers=2,
        max_iter=5,
        learning_rate=3e-3,
        batch_size=32,
        # No torch.compile: on these few tiny images its start-up would
        # cost more than it saves.
        compile=False,
        random_state=0,
        device="cpu",
    ),
}

# %%
# Fit and measure
# ---------------
rows = []
for name, representation in representations.items():
    steps = [] if representation is None else [representation]
    pipeline = make_pipeline(
        *steps, StandardScaler(), LogisticRegression(max_iter=2000)
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The short training budgets stop the neural models while they
        # still improve; they warn so.
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    error = None
    if hasattr(representation, "inverse_transform"):
        reconstruction = representation.inverse_transform(
            representation.transform(X_test)
        )
        error = float(np.mean((reconstruction - X_test) ** 2))
    rows.append((name, error, pipeline.score(X_test, y_test), seconds))

print(
    f"{'representation (16 features)':<38}{'recon. MSE':>11}"
    f"{'accuracy':>10}{'fit s':>7}"
)
for name, error, accuracy, seconds in rows:
    error = "-" if error is None else f"{error:.4f}"
    print(f"{name:<38}{error:>11}{accuracy:>10.3f}{seconds:>7.1f}")

# %%
# How to read the table (the numbers above are those of this build; they
# vary a little with the CPU and the library versions):
#
# * a 16-feature code keeps most of what a linear classifier needs from the
#   64 pixels: every representation stays within a few points of raw pixels;
# * the autoencoder is non-linear, so with the same width it can reconstruct
#   better than PCA, the best *linear* code of that width;
# * the VAE's code is pulled towards its prior (the KL term of its ELBO), and
#   its decoder models pixel probabilities: it reconstructs less sharply, and
#   its 16 features are less separable by a linear classifier at this budget;
# * the supervised dictionary lets the labels shape its atoms: it trades
#   reconstruction error for accuracy, compared with the unsupervised one;
# * the CNN is trained end to end on the labels, for the task rather than for
#   reconstruction, and has no inverse;
# * the times include each whole pipeline; they are short because the
#   training budgets here are small.

# %%
# What the models learned
# -----------------------
# The components of each linear-coding model: PCA's principal axes, the
# autoencoder's first-layer weights (the filters its hidden units apply to
# the pixels) and the dictionary's atoms. Red is positive, blue negative.
# The autoencoder's (16 of its 128 hidden units) look noisier: each is one
# input of the non-linear layers after it, not a pattern that reconstructs
# the digit on its own as a PCA axis or an atom does.
fig, axes = plt.subplots(4, 16, figsize=(12, 3.6))
for row, name in enumerate(
    [
        "PCA",
        "AutoencoderTransformer",
        "DictionaryLearner",
        "DictionaryLearner (supervised)",
    ]
):
    ComponentsDisplay.from_estimator(
        representations[name], max_components=16, n_cols=16, ax=axes[row]
    )
    axes[row, 0].set_ylabel(
        name.replace("DictionaryLearner", "Dict.").replace(
            "AutoencoderTransformer", "AE"
        ),
        rotation=0,
        ha="right",
        fontsize=8,
    )
fig.suptitle("first 16 components of each model")
plt.show()

# %%
# Reconstructions of the first ten held-out digits by the unsupervised
# dictionary: a sparse combination of 16 atoms per digit.
ReconstructionDisplay.from_estimator(
    representations["DictionaryLearner"],
    X_test,
    image_shape=(8, 8),
    title="DictionaryLearner reconstructions",
)
plt.show()

# %%
# And the first-layer kernels of the CNN: 5x5 filters trained on the labels
# from random weights. :ref:`sphx_glr_auto_examples_plot_cnn_kernels.py`
# looks at them and at their feature maps in detail.
ComponentsDisplay.from_estimator(
    representations["PretrainedCNNFeatures (trained here)"],
    title="the CNN's first-layer kernels",
)
plt.show()
