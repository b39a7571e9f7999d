"""Fine-tuning the last blocks of a ``PretrainedCNNFeatures`` backbone with skorch.

A temporary linear head is put on the features; only the last ``k`` blocks
and the head are trained (cross-entropy on the labels), the frozen blocks stay
in eval mode so their batch-norm statistics and dropout never change. The
head is dropped afterwards. This module and ``_engine`` are the only ones that
import skorch; it reuses the engine's loss guard and progress bar.
"""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog
from torch import nn

from ._engine import EpochProgressBar, NonFiniteLossGuard, fused_optimizer_kwargs
from .utils import seeded

__all__ = ["FineTuneClassifier", "fine_tune", "iter_blocks"]


def iter_blocks(module, prefix=""):
    """Yield ``(name, block)``: parameterised children in registration order.

    ``nn.Sequential`` and ``nn.ModuleList`` containers are opened (recursively),
    so ResNet's ``layer4`` gives its residual blocks ``layer4.0``, ``layer4.1``
    and DenseNet's ``features`` its dense blocks and transitions.
    """
    for name, child in module.named_children():
        full_name = f"{prefix}{name}"
        if type(child) in (nn.Sequential, nn.ModuleList):
            yield from iter_blocks(child, full_name + ".")
        elif next(child.parameters(), None) is not None:
            yield full_name, child


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


class _FineTuneNet(NeuralNet):
    """A skorch net that optimises only parameters with ``requires_grad``."""

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
        ]

    def get_all_learnable_params(self):
        for name, parameter in super().get_all_learnable_params():
            if parameter.requires_grad:
                yield name, parameter


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
    classes: np.ndarray
    blocks: list
    n_iter: int
    loss_curve: list


def fine_tune(estimator, images, y, device):
    """Train the last ``estimator.fine_tune_layers`` blocks of ``estimator.model_``.

    ``model_`` is changed in place (its last blocks); everything else in it is
    left bit-identical.
    """
    from ._pretrained import _NodeOutput

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
    model = estimator.model_
    features = model if estimator.layer is None else _NodeOutput(model, estimator.layer)
    used = {id(parameter) for parameter in features.parameters()}
    blocks = [(name, block) for name, block in iter_blocks(model)
              if any(id(parameter) in used for parameter in block.parameters())]
    k = estimator.fine_tune_layers
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

    n_features = estimator._probe_width(device)
    callbacks = [("nonfinite_loss_guard", NonFiniteLossGuard(estimator.learning_rate))]
    if estimator.verbose == 1:
        callbacks.append(("progress_bar", EpochProgressBar(
            total=estimator.max_iter, description="fine-tune")))
    elif estimator.verbose >= 2:
        callbacks.append(("print_log", PrintLog(sink=print)))
    dataset = _LabeledImages(images, estimator._preprocessor(),
                             encoder.transform(y).astype(np.int64))
    with seeded(estimator.random_state, device):
        module = FineTuneClassifier(
            features, estimator._pool, n_features, len(encoder.classes_),
            [block for _, block in trainable],
        )
        net = _FineTuneNet(
            module,
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam,
            lr=estimator.learning_rate,
            max_epochs=estimator.max_iter,
            batch_size=estimator.batch_size,
            iterator_train__shuffle=True,
            iterator_train__num_workers=estimator.num_workers,
            train_split=None,
            callbacks=callbacks,
            device=str(device),
            verbose=estimator.verbose,
            **fused_optimizer_kwargs(torch.optim.Adam, device, prefix="optimizer__"),
        )
        net.fit(dataset, y=None)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.eval()
    return FineTuneResult(
        classes=encoder.classes_,
        blocks=[name for name, _ in trainable],
        n_iter=len(net.history),
        loss_curve=[float(loss) for loss in net.history[:, "train_loss"]],
    )
