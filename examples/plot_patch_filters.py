"""
=========================================
Filters learned on natural-image patches
=========================================

A learned representation is a set of *feature extractors*: each unit of an
autoencoder's first layer, or each atom of a dictionary, is a weight vector
whose dot product with the input says how much of that pattern the input
holds. On image patches these weight vectors are small images themselves,
so plotting them shows what the model looks for.

Sparse coding of natural images (Olshausen & Field, 1996) is the classic
case: asked to reconstruct whitened photo patches from a few active units
each, a model learns localised, oriented edge detectors, much like the
receptive fields of simple cells in the visual cortex. This example learns
64 filters on 12x12 patches of the photos that ship with scikit-learn and
scikit-image, with four models:

* an :class:`~sklearn_replearn.AutoencoderTransformer` with one linear layer
  each way and no sparsity (``sparsity=0``);
* the same autoencoder with a sparsity penalty on its code (``sparsity=1``);
* a :class:`~sklearn_replearn.DictionaryLearner` (sparse coding proper);
* random filters, for reference.
"""

# %%
# Whitened patches
# ----------------
# :func:`~sklearn_replearn.datasets.load_patches` cuts patches from the left
# half of each photo for training and from the right half for testing, removes
# each patch's mean and whitens them (natural images have most of their
# variance in the lowest frequencies; whitening flattens that spectrum so the
# filters are not dominated by it).
# sphinx_gallery_thumbnail_number = 2
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sklearn_replearn import AutoencoderTransformer, DictionaryLearner
from sklearn_replearn.datasets import (
    PATCH_IMAGES,
    filter_localisation,
    load_patches,
)
from sklearn_replearn.plotting import (
    ComponentsDisplay,
    ReconstructionDisplay,
)

patch_size, n_filters = 12, 64
shape = (patch_size, patch_size)
X_train, X_test, to_pixels = load_patches(patch_size, 400, random_state=0)
print(f"photos: {', '.join(PATCH_IMAGES)}")
print(
    f"{len(X_train)} training and {len(X_test)} held-out {patch_size}x"
    f"{patch_size} patches"
)

# %%
# Four sets of 64 filters
# -----------------------
# The autoencoders have no hidden layer (``hidden_layer_sizes=()``): the
# encoder's weights are the filters (``components_``). With ``sparsity > 0``
# their loss is that of sparse coding: reconstruction error plus an L1
# penalty on the code.
models = {
    "AE, sparsity=0": AutoencoderTransformer(
        n_components=n_filters,
        hidden_layer_sizes=(),
        sparsity=0.0,
        max_iter=60,
        learning_rate=3e-3,
        random_state=0,
        device="cpu",
    ),
    "AE, sparsity=1": AutoencoderTransformer(
        n_components=n_filters,
        hidden_layer_sizes=(),
        sparsity=1.0,
        max_iter=60,
        learning_rate=3e-3,
        random_state=0,
        device="cpu",
    ),
    "DictionaryLearner": DictionaryLearner(
        n_components=n_filters,
        alpha=3.0,
        max_iter=10,
        random_state=0,
        device="cpu",
    ),
}
random_filters = np.random.RandomState(0).randn(n_filters, patch_size**2)

# %%
# How localised are the filters?
# -------------------------------
# :func:`~sklearn_replearn.datasets.filter_localisation` measures, for each
# filter, the share of its energy inside the best small window: edge-like
# filters concentrate in a few pixels, random ones spread over the whole
# patch. The held-out reconstruction error is in whitened units (1 is the
# data's variance).
print(
    f"{'model (64 filters)':<20}{'held-out MSE':>13}{'localisation':>14}"
    f"{'fit s':>7}"
)
print(
    f"{'random filters':<20}{'-':>13}"
    f"{filter_localisation(random_filters, shape).mean():>14.2f}{'-':>7}"
)
for name, model in models.items():
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short budgets
        model.fit(X_train)
    seconds = time.perf_counter() - start
    error = np.mean(
        (model.inverse_transform(model.transform(X_test)) - X_test) ** 2
    )
    localisation = filter_localisation(model.components_, shape).mean()
    print(f"{name:<20}{error:>13.3f}{localisation:>14.2f}{seconds:>7.1f}")

# %%
# The two columns pull in opposite directions. The plain autoencoder
# reconstructs best: it has no constraint besides the reconstruction. The
# sparse models pay for their few active units in reconstruction error (the
# dictionary's codes are lasso solutions at ``alpha=3``, most of them zero),
# and in exchange their filters concentrate in small windows, well above the
# random reference; the plain autoencoder's stay near it.
#
# The filters
# -----------
# Each filter is drawn on its own symmetric scale: red positive, blue
# negative, white zero. The plain autoencoder only has to span the same
# subspace as the data's principal components, so nothing makes its filters
# local: any rotation of them reconstructs as well. The sparsity penalty
# (in the sparse autoencoder and in the dictionary) asks for few active
# filters per patch, and that is what makes them local and oriented.
fig, axes = plt.subplots(4, 16, figsize=(12, 3.6))
sets = [(name, model.components_) for name, model in models.items()]
sets.append(("random", random_filters))
for row, (name, filters) in enumerate(sets):
    ComponentsDisplay(filters[:16], image_shape=shape).plot(
        n_cols=16, ax=axes[row]
    )
    axes[row, 0].set_ylabel(name, rotation=0, ha="right", fontsize=8)
fig.suptitle("the first 16 of each set of 64 filters")
plt.show()

# %%
# All 64 atoms of the dictionary:
ComponentsDisplay.from_estimator(
    models["DictionaryLearner"],
    image_shape=shape,
    n_cols=16,
    title="DictionaryLearner: 64 atoms learned on photo patches",
)
plt.show()

# %%
# Reconstructions
# ---------------
# Held-out patches (top) and the dictionary's reconstructions (bottom), shown
# as pixels (``to_pixels`` undoes the whitening). The patches are drawn among
# the more contrasted half: a patch of flat sky shows nothing.
contrast = to_pixels(X_test).var(axis=1)
busy = np.flatnonzero(contrast >= np.median(contrast))
shown = np.sort(np.random.RandomState(0).choice(busy, 10, replace=False))
dictionary = models["DictionaryLearner"]
ReconstructionDisplay(
    to_pixels(X_test[shown]),
    to_pixels(
        dictionary.inverse_transform(dictionary.transform(X_test[shown]))
    ),
    image_shape=shape,
    title="held-out patches, reconstructed from sparse codes",
).plot()
plt.show()
