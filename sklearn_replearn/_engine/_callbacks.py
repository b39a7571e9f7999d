"""The engine's skorch callbacks: the training policy, loss terms, warm-up."""

from copy import deepcopy

import torch
from skorch.callbacks import Callback

from .._utils import TrainingPolicy

__all__ = [
    "LinearWarmup",
    "LossTermsRecorder",
    "PolicyCallback",
    "check_callbacks",
    "unwrapped",
]


def unwrapped(module):
    """The user-level module inside a data-parallel wrapper (DDP's ``.module``).

    Under multi-GPU training (Accelerate) ``net.module_`` is a
    ``DistributedDataParallel`` wrapper; attributes such as the VAE's KL
    weight must be set on the module it wraps.
    """
    return getattr(module, "module", module)


def check_callbacks(callbacks):
    """``callbacks`` as a list of ``(name, callback)`` pairs, or a TypeError.

    Accepts skorch ``Callback`` instances and ``(name, Callback)`` pairs, as
    skorch does; anything else (strings, classes, functions) fails here with
    a message, not deep inside skorch.
    """
    pairs = []
    for position, item in enumerate(callbacks or []):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, callback = item
        else:
            name, callback = None, item
        if not isinstance(callback, Callback):
            shown = (callback.__name__ if isinstance(callback, type)
                     else repr(callback))
            raise TypeError(
                f"callbacks[{position}] must be a skorch callback instance (e.g. "
                "skorch.callbacks.LRScheduler(...)) or a (name, callback) pair; "
                f"got {shown}."
            )
        pairs.append((name or type(callback).__name__, callback))
    return pairs


class PolicyCallback(Callback):
    """Run a skorch net under a :class:`~sklearn_replearn._utils.TrainingPolicy`.

    Checks each batch loss for divergence (``on_batch_loss``, the engine's
    per-batch hook), ends each epoch through the policy
    (progress, stopping rule), keeps the best weights when the policy
    monitors a validation loss (early stopping) and restores them at the end,
    and reports a Ctrl-C as an interruption. It must be the last callback, so
    that the others have seen an epoch before it may stop training.
    """

    def __init__(self, policy, restore_best=False):
        self.policy = policy
        self.restore_best = restore_best
        # Epochs of the next run (None: the policy's max_iter); set by the
        # engine before a partial_fit of a few epochs.
        self.n_epochs = None

    def on_train_begin(self, net, **kwargs):
        self.session_ = self.policy.session(
            getattr(self, "n_epochs", None)).__enter__()
        self.stopping_ = False
        self.epoch_open_ = False
        self.best_weights_ = None

    def on_epoch_begin(self, net, **kwargs):
        self.epoch_open_ = True

    def on_batch_loss(self, net, loss, training):
        # The engine's per-batch hook (see _net.py), given the loss as a float.
        try:
            self.session_.check_batch_loss(
                loss, where="training" if training else "validation")
        except Exception:
            # skorch does not call on_train_end after an error: close here.
            self.session_.__exit__(None, None, None)
            raise

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        stop = self.session_.end_epoch(row["train_loss"], row.get("valid_loss"))
        self.epoch_open_ = False
        if self.restore_best and self.session_.improved:
            self.best_weights_ = deepcopy(net.module_.state_dict())
        if stop and self.policy.converged:
            # skorch's way to end fit_loop early (its EarlyStopping does the same).
            self.stopping_ = True
            raise KeyboardInterrupt

    def on_train_end(self, net, **kwargs):
        session, self.session_ = self.session_, None
        session.__exit__(None, None, None)
        if self.epoch_open_ and not self.stopping_:
            # skorch swallows KeyboardInterrupt in partial_fit: a Ctrl-C
            # arrived in the middle of an epoch.
            session.interrupt()
        if self.best_weights_ is not None:
            net.module_.load_state_dict(self.best_weights_)
        self.best_weights_ = None

    def __getstate__(self):
        state = self.__dict__.copy()
        # Only meaningful while training.
        for name in ("session_", "best_weights_"):
            state.pop(name, None)
        return state


class LossTermsRecorder(Callback):
    """Record the epoch mean of each term a module reports for its loss.

    A module whose ``loss`` stores ``loss_terms`` (a dict of name -> detached
    tensor of per-row values for the training batch) gets ``train_<name>``, the
    mean over the epoch's rows, in the history of each epoch: the VAE's
    reconstruction negative log-likelihood and KL. The batch tensors are only
    collected during the epoch (no per-batch arithmetic or device sync).
    """

    def on_epoch_begin(self, net, **kwargs):
        self.batches_ = []
        self.module_ = unwrapped(net.module_)

    def on_batch_loss(self, net, loss, training):
        # The engine's per-batch hook (see _net.py).
        terms = getattr(self.module_, "loss_terms", None)
        if training and terms:
            self.batches_.append(terms)

    def on_epoch_end(self, net, **kwargs):
        if not self.batches_:
            return
        for name in self.batches_[0]:
            values = torch.cat([terms[name].reshape(-1) for terms in self.batches_])
            net.history.record(f"train_{name}", float(values.double().mean()))
        self.batches_ = []

    def __getstate__(self):
        state = self.__dict__.copy()
        # Only meaningful while training (and the module is pickled with the net).
        for name in ("batches_", "module_"):
            state.pop(name, None)
        return state


class LinearWarmup(Callback):
    """Ramp a module attribute linearly from 0 to ``value`` over ``n_epochs``.

    Epoch ``e`` (1-based, counted over ``partial_fit`` calls too) trains with
    ``value * min(1, (e - 1) / n_epochs)``: the VAE's KL annealing.
    """

    def __init__(self, attribute, value, n_epochs):
        self.attribute = attribute
        self.value = value
        self.n_epochs = n_epochs

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history)
        fraction = 1.0 if self.n_epochs == 0 else min(1.0, (epoch - 1) / self.n_epochs)
        setattr(unwrapped(net.module_), self.attribute, self.value * fraction)


def make_policy_callback(*, owner, max_iter, tol, n_iter_no_change, warmup_epochs,
                         verbose, learning_rate, early_stopping,
                         reference_loss=None):
    """The :class:`PolicyCallback` for a net trained with these settings."""
    policy = TrainingPolicy(
        owner=owner, max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
        warmup_epochs=warmup_epochs, verbose=verbose,
        divergence_hint=f"Lower learning_rate (it is {learning_rate})",
        reference_loss=reference_loss,
    )
    return PolicyCallback(policy, restore_best=early_stopping)
