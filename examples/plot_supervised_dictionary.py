"""
=================================================
Supervised and unsupervised dictionary learning
=================================================

Dictionary learning represents each sample as a *sparse* combination of a
few learned atoms: the code ``c`` of ``x`` minimises
``0.5 * ||x - c @ D||^2 + alpha * ||c||_1``, and fitting learns the atoms
``D`` that make these codes reconstruct the data well. Nothing in that
objective knows about classes: the atoms describe what is common in the data,
which is not always what tells the classes apart.

A *supervised* (task-driven, discriminative) dictionary adds a
classification loss: a linear head on the codes must predict the labels, and
its gradient flows into the atoms (Mairal et al., 2012). When
:class:`~sklearn_replearn.DictionaryLearner` gets ``y`` in ``fit``, it
learns such a dictionary; ``supervision_weight=0`` ignores the labels.
Inside a :class:`~sklearn.pipeline.Pipeline` the labels reach ``fit``
automatically, so the two variants are one parameter apart.

This example compares them, each followed by a logistic regression, on two
data sets: the 8x8 digits and patches of three textures (brick, grass and
gravel) from scikit-image.
"""

# %%
# Two data sets
# -------------
# The texture patches are 8x8 squares cut from the left half of each
# (downsampled) photo for training and from its right half for testing, so
# that no training patch overlaps a test one. Each patch's mean brightness is
# removed and its contrast normalised: the classes must be told apart by
# their structure, not by how bright or contrasted they are.
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from skimage import data as skimage_data
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.image import extract_patches_2d
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_replearn import DictionaryLearner
from sklearn_replearn.plotting import ComponentsDisplay

digits = load_digits()
digit_split = train_test_split(
    digits.data / 16.0,
    digits.target,
    test_size=0.25,
    stratify=digits.target,
    random_state=0,
)

textures = ("brick", "grass", "gravel")


def texture_patches(half, n_patches, seed):
    patches, labels = [], []
    for label, name in enumerate(textures):
        image = getattr(skimage_data, name)().astype(np.float64) / 255.0
        image = image.reshape(256, 2, 256, 2).mean(
            axis=(1, 3)
        )  # downsample by 2
        part = image[:, :128] if half == "left" else image[:, 128:]
        cut = extract_patches_2d(
            part, (8, 8), max_patches=n_patches, random_state=seed + label
        )
        patches.append(cut.reshape(n_patches, -1))
        labels.append(np.full(n_patches, label))
    X = np.concatenate(patches)
    X -= X.mean(axis=1, keepdims=True)
    X /= X.std(axis=1, keepdims=True) + 1e-2
    return X, np.concatenate(labels)


texture_split = (
    *texture_patches("left", 500, 0),
    *texture_patches("right", 200, 10),
)
# As (X_train, X_test, y_train, y_test), like train_test_split's output.
texture_split = (
    texture_split[0],
    texture_split[2],
    texture_split[1],
    texture_split[3],
)
datasets = {"digits": digit_split, "textures": texture_split}
for name, (X_train, X_test, y_train, y_test) in datasets.items():
    print(
        f"{name}: {len(X_train)} training and {len(X_test)} test samples of "
        f"{X_train.shape[1]} values, {len(np.unique(y_train))} classes"
    )

# %%
# Fit and compare
# ---------------
# Both dictionaries have 32 atoms and the same sparsity ``alpha``; the only
# difference is ``supervision_weight`` (its default, 200, or 0). Raw values
# are the baseline.
results, fitted = [], {}
for data_name, (X_train, X_test, y_train, y_test) in datasets.items():
    alpha = 0.1 if data_name == "digits" else 0.5
    models = {
        "raw values": None,
        "unsupervised": DictionaryLearner(
            n_components=32,
            alpha=alpha,
            max_iter=10,
            supervision_weight=0.0,
            random_state=0,
            device="cpu",
        ),
        "supervised": DictionaryLearner(
            n_components=32,
            alpha=alpha,
            max_iter=10,
            random_state=0,
            device="cpu",
        ),
    }
    for model_name, dictionary in models.items():
        steps = [] if dictionary is None else [dictionary]
        pipeline = make_pipeline(
            *steps, StandardScaler(), LogisticRegression(max_iter=3000)
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        error = "-"
        if dictionary is not None:
            codes = dictionary.transform(X_test)
            reconstruction = dictionary.inverse_transform(codes)
            error = f"{np.mean((reconstruction - X_test) ** 2):.4f}"
            fitted[data_name, model_name] = dictionary
        results.append(
            (
                data_name,
                model_name,
                error,
                pipeline.score(X_test, y_test),
                seconds,
            )
        )

print(
    f"{'data':<10}{'representation':<16}{'test recon. MSE':>16}"
    f"{'test accuracy':>14}{'fit s':>7}"
)
for data_name, model_name, error, accuracy, seconds in results:
    print(
        f"{data_name:<10}{model_name:<16}{error:>16}{accuracy:>14.3f}"
        f"{seconds:>7.1f}"
    )

# %%
# On the textures, a linear classifier on the raw patches is at chance (one
# class in three): a texture is not a linear function of the pixels, since a
# shifted brick pattern is still brick. The sparse codes are a non-linear
# function of the patch, and a linear classifier does read some of the
# texture from them; much more from the supervised dictionary's. On the
# digits, which raw pixels already separate well, the gain is small.
#
# The supervised dictionary spends part of its atoms' freedom on the labels:
# its codes reconstruct worse (the MSE column) and separate the classes
# better. Supervision costs time, too: the labelled fit
# first learns an unsupervised dictionary (its starting point, and the
# fallback it returns when the labels do not help on held-out data), then
# trains atoms and head together.
#
# The atoms
# ---------
# The first 16 atoms of each dictionary on the textures (red positive, blue
# negative). The unsupervised atoms are the textures' dominant stripes and
# edges; the supervised ones are less regular: they are pulled towards
# patterns whose codes separate the three textures (the accuracy column),
# at the cost of reconstruction (the MSE column).
fig, axes = plt.subplots(2, 16, figsize=(12, 1.9))
for row, model_name in enumerate(["unsupervised", "supervised"]):
    ComponentsDisplay.from_estimator(
        fitted["textures", model_name],
        max_components=16,
        n_cols=16,
        ax=axes[row],
    )
    axes[row, 0].set_ylabel(model_name, rotation=0, ha="right", fontsize=8)
fig.suptitle("texture dictionaries: first 16 atoms")
plt.show()

# %%
# And on the digits: the unsupervised atoms are parts of strokes; the
# supervised ones are shaped by what tells the digits apart.
fig, axes = plt.subplots(2, 16, figsize=(12, 1.9))
for row, model_name in enumerate(["unsupervised", "supervised"]):
    ComponentsDisplay.from_estimator(
        fitted["digits", model_name],
        max_components=16,
        n_cols=16,
        ax=axes[row],
    )
    axes[row, 0].set_ylabel(model_name, rotation=0, ha="right", fontsize=8)
fig.suptitle("digit dictionaries: first 16 atoms")
plt.show()
