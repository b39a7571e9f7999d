"""Fine-tuning the last blocks of a backbone, trained by the engine.

A temporary linear head is put on the features; only the last ``k`` blocks
and the head are trained (cross-entropy on the labels), the frozen blocks stay
in eval mode so their batch-norm statistics and dropout never change. The
head is dropped afterwards. Everything it needs (the backbone, the module
giving the features, the pooling, the preprocessing, the width,
hyper-parameters) is passed in: it knows no estimator. The engine's
``train_classifier`` trains it under the package's one training policy
(divergence, progress, Ctrl-C).
"""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from torch import nn

from .._engine import train_classifier
from .._utils import seeded

__all__ = ["FineTuneClassifier", "fine_tune"]


class FineTuneClassifier(nn.Module):
    """Features -> pooling -> a new linear head; frozen blocks stay in eval mode."""

    def __init__(self, features, pool, n_features, n_classes, trainable):
        super().__init__()
        self.features = features
        self.head = nn.Linear(n_features, n_classes)
        self.pool = pool
        # A plain list: the blocks are already registered inside ``features``.
        self.trainable = list(trainable)

    def train(self, mode=True):
        super().train(mode)
        self.features.eval()
        for block in self.trainable:
            block.train(mode)
        return self

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


class _LabeledImages(torch.utils.data.Dataset):
    """(preprocessed image, label index) pairs, one image loaded per item."""

    def __init__(self, images, preprocess, targets):
        self.images = images
        self.preprocess = preprocess
        self.targets = targets

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.preprocess.prepare(self.images.load(index), f"X[{index}]")
        image = self.preprocess.finish(image[np.newaxis])[0].contiguous()
        return image, self.targets[index]


@dataclass
class FineTuneResult:
    """What fine-tuning learned: the labels, trained blocks and loss per epoch."""

    classes: np.ndarray
    blocks: list
    n_iter: int
    loss_curve: list


def fine_tune(model, features, pool, preprocess, images, y, *, fine_tune_layers,
              n_features, blocks, learning_rate, max_iter, batch_size, num_workers,
              device, random_state, verbose):
    """Train the last ``fine_tune_layers`` blocks of ``model`` on ``(images, y)``.

    ``model`` is changed in place (its last blocks); everything else in it is
    left bit-identical. It ends frozen (no ``requires_grad``) in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone, on ``device``.
    features : torch.nn.Module
        Computes the features from a batch: ``model`` itself or a module
        sharing its layers (a graph node's output).
    pool : callable
        Features -> ``(N, n_features)`` vectors.
    preprocess : Preprocessing
        Resizes, crops and normalises each image.
    images : ImageSet
    y : array-like of shape (n_images,)
        Class labels.
    fine_tune_layers : int
        How many of the last blocks used by ``features`` are trained.
    n_features : int
        Width of the pooled features (the head's input).
    blocks : list of (str, torch.nn.Module)
        ``model``'s blocks in forward order (its backbone source's
        ``fine_tune_blocks``).
    learning_rate, max_iter, batch_size, num_workers, random_state, verbose
        As the estimator's parameters of the same names.
    device : torch.device

    Returns
    -------
    FineTuneResult
    """
    y = np.asarray(y)
    check_classification_targets(y)
    if y.ndim != 1 or y.shape[0] != len(images):
        raise ValueError(
            f"y must hold one label per image: X has {len(images)} images, y has "
            f"shape {y.shape}."
        )
    encoder = LabelEncoder().fit(y)
    if len(encoder.classes_) < 2:
        raise ValueError(
            f"Fine-tuning needs at least 2 classes in y; got {len(encoder.classes_)}."
        )
    used = {id(parameter) for parameter in features.parameters()}
    blocks = [(name, block) for name, block in blocks
              if any(id(parameter) in used for parameter in block.parameters())]
    k = fine_tune_layers
    if k > len(blocks):
        raise ValueError(
            f"fine_tune_layers={k}, but the features come from only {len(blocks)} "
            f"block(s): {', '.join(name for name, _ in blocks)}; pass at most "
            f"{len(blocks)}."
        )
    trainable = blocks[-k:]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for _, block in trainable:
        for parameter in block.parameters():
            parameter.requires_grad_(True)

    dataset = _LabeledImages(images, preprocess,
                             encoder.transform(y).astype(np.int64))
    with seeded(random_state, device):
        module = FineTuneClassifier(
            features, pool, n_features, len(encoder.classes_),
            [block for _, block in trainable],
        )
        record = train_classifier(
            module, dataset, device=device, owner="PretrainedCNNFeatures fine-tuning",
            max_iter=max_iter, batch_size=batch_size, learning_rate=learning_rate,
            num_workers=num_workers, verbose=verbose,
        )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.eval()
    return FineTuneResult(
        classes=encoder.classes_,
        blocks=[name for name, _ in trainable],
        n_iter=record.n_epochs,
        loss_curve=record.loss_curve,
    )
