"""The engine's classifier net: trains what requires grad, under the policy.

Used to fine-tune the last blocks of a pretrained CNN with a temporary linear
head (``vision/_finetune.py``): cross-entropy on labels, Adam (fused where
torch has the kernel), the same training policy as every other loop
(divergence, progress, Ctrl-C), and no stopping rule (``max_iter`` epochs).
"""

import torch
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring

from ._callbacks import check_callbacks, make_policy_callback
from ._net import POLICY_CALLBACK_NAME
from ._optimizers import fused_optimizer_kwargs
from ._record import training_record

__all__ = ["ClassifierNet", "train_classifier"]


class ClassifierNet(NeuralNet):
    """A skorch net that optimises only parameters with ``requires_grad``."""

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
        ]

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        # The engine's per-batch hook (see _net.py), which skorch's loop does
        # not call: the training policy's divergence check listens to it.
        value = loss.item()
        for _, callback in self.callbacks_:
            if hasattr(callback, "on_batch_loss"):
                callback.on_batch_loss(self, value, training)

    def get_all_learnable_params(self):
        for name, parameter in super().get_all_learnable_params():
            if parameter.requires_grad:
                yield name, parameter


def _one_row_tail(n_rows, batch_size):
    return n_rows > 1 and n_rows % batch_size == 1


def train_classifier(module, dataset, *, device, owner, max_iter, batch_size,
                     learning_rate, num_workers=0, verbose=0, callbacks=None):
    """Train ``module`` (images -> logits) on ``dataset`` of (image, label index).

    Returns the :class:`~sklearn_replearn._engine.TrainingRecord` of the run.
    The module is trained in place; only its parameters that require grad
    change.
    """
    policy = make_policy_callback(
        owner=owner, max_iter=max_iter, tol=None, n_iter_no_change=1,
        warmup_epochs=0, verbose=verbose, learning_rate=learning_rate,
        early_stopping=False,
    )
    net = ClassifierNet(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=learning_rate,
        max_epochs=max_iter,
        batch_size=batch_size,
        iterator_train__shuffle=True,
        iterator_train__num_workers=num_workers,
        # A last batch of one image makes a training BatchNorm fail ("expected
        # more than 1 value per channel"; resnet18 at 32x32 pixels, 5 images
        # in batches of 4): drop it. Batches are shuffled, so every image
        # still trains in the other epochs.
        iterator_train__drop_last=_one_row_tail(len(dataset), batch_size),
        train_split=None,
        callbacks=[*check_callbacks(callbacks), (POLICY_CALLBACK_NAME, policy)],
        device=str(device),
        verbose=0,
        **fused_optimizer_kwargs(torch.optim.Adam, device, prefix="optimizer__"),
    )
    net.fit(dataset, y=None)
    return training_record(net)
