"""The training engine: skorch nets, built, trained and stripped for estimators.

The only package that imports skorch. Its modules, from the bottom up:
``_data`` (whole-batch row loading), ``_optimizers`` (accepted optimizers,
fused kernels), ``_callbacks`` (the training policy as a skorch callback, loss
terms, warm-up), ``_net`` (the net, and the only overrides of skorch
internals), ``_accelerate`` (the same net through Hugging Face Accelerate),
``_record`` (what a run leaves for the estimator), ``_classifier`` (the
classifier net that fine-tunes a CNN's last blocks) and ``_service`` (what
estimators call: build, train, strip).
"""

from ._classifier import train_classifier
from ._data import RowBatchLoader, RowDataset
from ._net import ReconstructionNet
from ._optimizers import OPTIMIZERS, check_optimizer, fused_optimizer_kwargs
from ._service import (
    TrainingRecord,
    build_net,
    load_net_state,
    net_from_state,
    net_settings,
    net_state,
    strip_net,
    train_net,
    training_device,
    update_net,
)

__all__ = [
    "OPTIMIZERS",
    "ReconstructionNet",
    "RowBatchLoader",
    "RowDataset",
    "TrainingRecord",
    "build_net",
    "check_optimizer",
    "fused_optimizer_kwargs",
    "load_net_state",
    "net_from_state",
    "net_settings",
    "net_state",
    "strip_net",
    "train_classifier",
    "train_net",
    "training_device",
    "update_net",
]
