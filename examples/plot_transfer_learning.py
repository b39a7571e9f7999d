"""
=========================================================
Transfer learning: reuse a CNN trained on another task
=========================================================

*Transfer learning* reuses what a network learned on one task (the
*source*) for another (the *target*). Its early layers extract local
features (edges, strokes, textures) that serve many tasks, so instead of
training a network on the target from scratch one can:

* keep the source network **frozen** and use it as a feature extractor,
  training only a simple classifier on its features. No gradient flows
  through the network, so training needs no activations stored for a
  backward pass and no optimizer state: one forward pass per image, and the
  classifier trains in a fraction of a second. It works when the source's
  features describe the target's images well;
* **fine-tune** its last block(s) on the target: more compute and memory,
  but the top features adapt to the target. It pays when the target differs
  from the source and has enough labels to train those blocks without
  overfitting.

Pretrained ImageNet weights cannot be downloaded while this page builds, so
this example makes its own source and target from the 8x8 digits: a small
CNN is trained on the digits **0-4** (the source), then reused on the digits
**5-9** (the target, classes it never saw), through
:class:`~sklearn_replearn.PretrainedCNNFeatures` with ``backbone=<module>``.
It is compared with training the same architecture from scratch on 5-9,
and with fine-tuning the source network's last convolution, each followed
by a :class:`~sklearn.linear_model.LogisticRegression`, with few and with
all target labels.
"""

# %%
# Source and target
# -----------------
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklearn_replearn import PretrainedCNNFeatures

digits = load_digits()
X = (digits.data / 16.0).astype(np.float32)
y = digits.target
source = y <= 4
X_source, y_source = X[source], y[source]
X_train, X_test, y_train, y_test = train_test_split(
    X[~source],
    y[~source],
    test_size=0.25,
    stratify=y[~source],
    random_state=0,
)
# A small labelled target set: ten images per class.
rng = np.random.RandomState(0)
few = np.concatenate(
    [
        rng.choice(np.flatnonzero(y_train == digit), 10, replace=False)
        for digit in range(5, 10)
    ]
)
print(
    f"source: {len(X_source)} digits 0-4; target: {len(X_train)} training "
    f"digits 5-9 ({len(few)} in the small set), {len(X_test)} held out"
)


# %%
# Train a CNN on the source
# -------------------------
# Three 3x3 convolutions and a linear classifier over five classes, trained
# with a plain torch loop for a few epochs: this stands for a network someone
# else trained on a large data set.
def make_cnn(n_classes, seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, n_classes),
    )


source_cnn = make_cnn(5, seed=0)
optimizer = torch.optim.Adam(source_cnn.parameters(), lr=3e-3)
images = torch.from_numpy(X_source).reshape(-1, 1, 8, 8)
labels = torch.from_numpy(y_source).long()
generator = torch.Generator().manual_seed(0)
start = time.perf_counter()
for epoch in range(10):
    for batch in torch.randperm(len(images), generator=generator).split(32):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(
            source_cnn(images[batch]), labels[batch]
        )
        loss.backward()
        optimizer.step()
source_seconds = time.perf_counter() - start
source_cnn.eval()
with torch.no_grad():
    source_accuracy = (
        (source_cnn(images).argmax(1) == labels).float().mean()
    )
print(
    f"source CNN: 10 epochs in {source_seconds:.1f} s, training accuracy "
    f"on 0-4 {source_accuracy:.3f}"
)

# %%
# Ways to use it on the target
# ----------------------------
# ``PretrainedCNNFeatures`` takes any module taking ``(N, C, H, W)`` batches.
# ``weights=None`` keeps the module's own weights; the images are given as
# flat rows of 8x8 pixels (``image_shape``), fed at their size
# (``image_size=(8, 8)``) and unnormalised, as in the source training.
# By default (``layer=None``) the features are the input of the module's last
# ``nn.Linear`` (the source classifier is dropped): 32 averaged values per
# image. ``layer="6"`` (the last ReLU) with ``pooling=None`` takes the last
# convolution's maps instead, unpooled: 32 channels x 4 x 4 positions.
#
# * **frozen**: ``fine_tune_layers=0``, the source weights as they are, at
#   either layer;
# * **fine-tune last block**: ``fine_tune_layers=1`` trains the last
#   convolution (and a temporary head) on the target labels, starting from the
#   source weights; the first two convolutions stay frozen;
# * **from scratch**: the same architecture with random weights, all three
#   convolutions trained on the target (``fine_tune_layers=3``);
# * and, as a control, the random network frozen: how much of the frozen
#   network's accuracy comes from the source training at all?
common = dict(
    weights=None,
    image_shape=(1, 8, 8),
    image_size=(8, 8),
    normalize=False,
    batch_size=32,
    # No torch.compile: on these few tiny images its start-up would
    # cost more than it saves.
    compile=False,
    random_state=0,
    device="cpu",
)
tuning = dict(max_iter=10, learning_rate=3e-3)
last_maps = dict(layer="6", pooling=None)
arms = {
    "frozen, pooled": lambda: PretrainedCNNFeatures(source_cnn, **common),
    "frozen, last maps": lambda: PretrainedCNNFeatures(
        source_cnn, **last_maps, **common
    ),
    "fine-tune last block": lambda: PretrainedCNNFeatures(
        source_cnn, fine_tune_layers=1, **tuning, **common
    ),
    "from scratch": lambda: PretrainedCNNFeatures(
        make_cnn(5, seed=1), fine_tune_layers=3, **tuning, **common
    ),
    "random, frozen, last maps": lambda: PretrainedCNNFeatures(
        make_cnn(5, seed=1), **last_maps, **common
    ),
}
n_last_block = sum(p.numel() for p in source_cnn[5].parameters())
n_all = sum(p.numel() for p in source_cnn[:-1].parameters())
n_trainable = {"fine-tune last block": n_last_block, "from scratch": n_all}

# %%
# Accuracy and time
# -----------------
# Each arm is a pipeline (features, ``StandardScaler``, logistic regression)
# fitted on the target's training digits, with 50 labels and with all of
# them; the time is that of the whole ``fit``, the accuracy is on the
# held-out digits 5-9.
results = []
for labelled, rows in [
    ("50 labels", few),
    ("all labels", np.arange(len(X_train))),
]:
    for name, make in arms.items():
        pipeline = make_pipeline(
            make(), StandardScaler(), LogisticRegression(max_iter=2000)
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(X_train[rows], y_train[rows])
        seconds = time.perf_counter() - start
        n_features = pipeline[0].transform(X_test[:1]).shape[1]
        results.append(
            (
                labelled,
                name,
                n_trainable.get(name, 0),
                n_features,
                pipeline.score(X_test, y_test),
                seconds,
            )
        )

# "trained" counts the CNN weights each arm trains on the target.
print(
    f"{'labels':<11}{'CNN':<26}{'trained':>8}{'features':>9}"
    f"{'accuracy':>9}{'fit s':>7}"
)
for labelled, name, weights, width, accuracy, seconds in results:
    print(
        f"{labelled:<11}{name:<26}{weights:>8}{width:>9}{accuracy:>9.3f}"
        f"{seconds:>7.2f}"
    )

# %%
# The same numbers as a figure: accuracy (left) and the time to fit
# (right, log scale) of each arm, with 50 and with all target labels.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
names = list(arms)
positions = np.arange(len(names))
for offset, labelled in [(-0.2, "50 labels"), (0.2, "all labels")]:
    chosen = [row for row in results if row[0] == labelled]
    left.barh(
        positions + offset,
        [row[4] for row in chosen],
        height=0.4,
        label=labelled,
    )
    right.barh(
        positions + offset,
        [row[5] for row in chosen],
        height=0.4,
        label=labelled,
    )
left.set_yticks(positions, names)
left.invert_yaxis()
left.set_xlim(0.5, 1.0)
left.set_xlabel("held-out accuracy on digits 5-9")
right.set_xscale("log")
right.set_xlabel("fit time (s, log scale)")
fig.legend(
    *left.get_legend_handles_labels(),
    loc="upper center",
    ncol=2,
    fontsize=8,
)
fig.tight_layout(rect=(0, 0, 1, 0.92))
plt.show()

# %%
# Reading the table
# -----------------
# (These are the numbers of this build; another CPU or seed moves them by a
# point or two.)
#
# * **Cost.** The frozen arms train no CNN weight: their fit is one forward
#   pass over the images and a logistic regression, many times faster than
#   the arms that train convolutions (a backward pass per batch, stored
#   activations, an optimizer state per weight). With a real backbone of
#   millions of weights the gap is what makes frozen features practical on
#   a CPU.
# * **Which layer.** The frozen pooled features, the input of the source
#   classifier, do worst here: a network trained to separate 0-4 keeps in its
#   last 32 averaged values mostly what separates 0-4. The last convolution's
#   maps, before that pooling, keep *where* each stroke is and transfer much
#   better: here at least as well as training from scratch, at a fraction
#   of the cost. Earlier layers are more general, later ones more specific
#   to the source task (Yosinski et al., 2014).
# * **Fine-tuning** the last block adapts the pooled features to 5-9, at the
#   price of a training loop. With all the target labels it recovers most of
#   the gap; with 50 it gains little: a block of thousands of weights needs
#   more than ten images per class. Fine-tuning pays when the target has
#   labels enough to train what it unfreezes.
# * **The control.** On 8x8 digits even the random network's maps, frozen,
#   do about as well as the source's: these images are so small and clean
#   that almost any bank of local filters separates them. Source training
#   pays when the source is large and varied and the target's images are
#   hard for generic filters, which is the case of ImageNet backbones on
#   photos and not of a five-class source of 900 tiny digits.
#
# With a pretrained backbone (``PretrainedCNNFeatures("resnet18")`` and its
# ImageNet weights) the same choices are made with ``layer``, ``pooling``
# and ``fine_tune_layers``.
