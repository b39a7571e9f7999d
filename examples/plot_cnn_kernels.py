"""
=====================================
A CNN's kernels and its feature maps
=====================================

A convolution layer is a bank of small *kernels* (here 5x5 pixels), each
slid over the whole image. At each position a kernel computes a dot product
with the pixels under it, so each output value depends only on a small
neighbourhood (sparse connections) and the same weights serve every position
(weight sharing): a kernel is a *local feature extractor*, and its output over
the image, the *feature map*, says where that local pattern occurs.

Pretrained networks learn such kernels on millions of photos. No weights can
be downloaded while this page builds, so this example trains a small CNN
here, from random weights, on the 8x8 digits (resized to 16x16 so that the
kernels have room), through
:class:`~sklearn_replearn.PretrainedCNNFeatures` with ``weights=None`` and
``fine_tune_layers=2``. Its kernels are then those of a network trained for
a few seconds on 1,347 tiny images, not ImageNet's edge and colour detectors;
what they show is how training turns random kernels into structured ones,
and what their feature maps respond to.
"""

# %%
# A small CNN, trained on the digits
# ----------------------------------
# Two convolutions with ReLUs and pooling, then a linear classifier.
# ``PretrainedCNNFeatures`` copies the module at fit, so ``cnn`` itself keeps
# its random initial weights. With ``fine_tune_layers=2`` and labels,
# ``fit`` trains both convolutions with a temporary linear head (dropped
# afterwards); ``transform`` returns the input of the module's last
# ``nn.Linear``: 16 features, one per channel of the second convolution.
# sphinx_gallery_thumbnail_number = 4
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn.plotting import ComponentsDisplay, FeatureMapsDisplay

digits = load_digits()
X = digits.data / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.25, stratify=digits.target, random_state=0
)

torch.manual_seed(0)
cnn = nn.Sequential(
    nn.Conv2d(1, 16, 5, padding=2),  # "0": 16 kernels of 5x5
    nn.ReLU(),  # "1": the first feature maps
    nn.MaxPool2d(2),  # "2"
    nn.Conv2d(16, 16, 3, padding=1),  # "3"
    nn.ReLU(),  # "4": the second feature maps
    nn.AdaptiveMaxPool2d(1),
    nn.Flatten(),
    nn.Linear(16, 10),
)
settings = dict(
    weights=None,
    image_shape=(1, 8, 8),
    image_size=(16, 16),
    normalize=False,
    batch_size=32,
    # No torch.compile: on these few tiny images its start-up would
    # cost more than it saves.
    compile=False,
    random_state=0,
    device="cpu",
)
start = time.perf_counter()
trained = PretrainedCNNFeatures(
    cnn, fine_tune_layers=2, max_iter=8, learning_rate=3e-3, **settings
).fit(X_train, y_train)
print(
    f"trained both convolutions for 8 epochs in "
    f"{time.perf_counter() - start:.1f} s"
)

# %%
# Do the trained features help?
# -----------------------------
# The same module with its random weights, frozen (``fine_tune_layers=0``),
# is a feature extractor too: random kernels still respond to local patterns.
# A logistic regression on each set of 16 features measures how useful they
# are on held-out digits.
random_features = PretrainedCNNFeatures(cnn, **settings).fit(X_train)
for name, features in [
    ("random kernels, frozen", random_features),
    ("kernels trained on the digits", trained),
]:
    classifier = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000)
    )
    classifier.fit(features.transform(X_train), y_train)
    accuracy = classifier.score(features.transform(X_test), y_test)
    print(f"{name:<32} held-out accuracy {accuracy:.3f}")

# %%
# The kernels, before and after training
# --------------------------------------
# The first convolution's 16 kernels: at initialisation (``cnn``, untouched)
# and after training (the fitted copy, ``trained.model_``). Red is a positive
# weight, blue a negative one. Eight epochs change them only in part: several
# kernels become smoother, with larger positive and negative regions (a
# stroke on one side, its background on the other), while others keep much of
# their random start. Kernels this small, trained this briefly on tiny
# digits, do not become the clean oriented edge detectors of networks trained
# on ImageNet; the accuracy table above shows what the training did buy.
fig, axes = plt.subplots(2, 16, figsize=(12, 1.9))
for row, (module, label) in enumerate(
    [(cnn, "random init"), (trained.model_, "trained")]
):
    kernels = module[0].weight.detach().numpy()[:, 0]  # (16, 5, 5)
    ComponentsDisplay(kernels.reshape(16, -1), image_shape=(5, 5)).plot(
        n_cols=16, ax=axes[row]
    )
    axes[row, 0].set_ylabel(label, rotation=0, ha="right", fontsize=8)
fig.suptitle("first-layer 5x5 kernels")
plt.show()

# %%
# ``ComponentsDisplay.from_estimator`` finds the first convolution of a
# fitted ``PretrainedCNNFeatures`` by itself:
ComponentsDisplay.from_estimator(
    trained, n_cols=16, title="trained kernels (from_estimator)"
)
plt.show()

# %%
# Feature maps: where each kernel fires
# -------------------------------------
# ``feature_maps`` returns the output of any layer for some images;
# :class:`~sklearn_replearn.plotting.FeatureMapsDisplay` plots one image's
# maps, each on its own colour scale (yellow: strong response). After the
# first ReLU (layer ``"1"``) each map is the 16x16 image filtered by one
# kernel: it lights up where the digit has that kernel's stroke or edge.
digit = X_test[0].reshape(8, 8)
plt.figure(figsize=(1.5, 1.5))
plt.imshow(digit, cmap="gray_r")
plt.title(f"a held-out {y_test[0]}")
plt.axis("off")
plt.show()

FeatureMapsDisplay.from_estimator(
    trained,
    digit,
    layer="1",
    max_maps=16,
    title="first-layer feature maps (16x16)",
)
plt.show()

# %%
# After the pooling and the second convolution (layer ``"4"``) the maps are
# 8x8: each value now sees a larger part of the digit (its receptive field
# grew from 5x5 to 10x10 input pixels), and the channels combine the first
# layer's patterns into larger parts of digits.
FeatureMapsDisplay.from_estimator(
    trained,
    digit,
    layer="4",
    max_maps=16,
    title="second-layer feature maps (8x8)",
)
plt.show()

# %%
# The shapes, for the whole held-out set:
for layer in ("1", "4"):
    maps = trained.feature_maps(X_test[:5], layer=layer)
    print(f"layer {layer!r}: feature maps of shape {np.shape(maps)}")
print(f"transform: features of shape {trained.transform(X_test).shape}")
