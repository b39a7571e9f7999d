"""The training engine: the one module that imports skorch.

Estimators build a :class:`ReconstructionNet` with :func:`make_net` inside
``fit`` and keep it as ``net_``. Compared with a plain ``skorch.NeuralNet``:

* batches are sliced whole out of one tensor (:class:`RowBatchLoader`) instead
  of being collated sample by sample, which costs ~40% on small MLPs;
* there is no silent validation split: one exists only when the estimator asks
  for early stopping, and is passed in explicitly;
* the target of a reconstruction is the input itself, so no ``y`` is copied;
* a NaN/inf loss stops training with :class:`TrainingDivergedError`.
"""

import functools
import math
import sys

import numpy as np
import scipy.sparse as sp
import torch
from skorch import NeuralNet
from skorch.callbacks import (
    Callback,
    EarlyStopping,
    EpochTimer,
    PassthroughScoring,
    PrintLog,
)
from skorch.helper import predefined_split

from .exceptions import TrainingDivergedError
from .utils import as_tensor

__all__ = [
    "OPTIMIZERS",
    "EpochProgressBar",
    "LinearWarmup",
    "LossTermsRecorder",
    "NonFiniteLossGuard",
    "ReconstructionNet",
    "RowBatchLoader",
    "RowDataset",
    "fused_optimizer_kwargs",
    "make_net",
    "unwrapped",
]

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


# Optimizers whose step needs no closure (LBFGS, for one, does).
_CLOSURE_FREE = frozenset(OPTIMIZERS.values())

# Optimizers with a fused implementation: one kernel updates all parameters,
# instead of about eight small operations per parameter tensor. The updates
# are the same up to float rounding, and a small MLP trains ~15% faster on a
# CPU, where per-operation dispatch dominates. Which devices have fused
# kernels depends on the torch version (the CPU since torch 2.4), so support
# is probed once per optimizer and device (see _fused_works).
_FUSED = frozenset({torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD})


def fused_optimizer_kwargs(optimizer_class, device, prefix=""):
    """``{prefix + "fused": True}`` where ``optimizer_class`` has a fused kernel
    for ``device`` in this torch; ``{}`` otherwise.

    ``prefix`` is e.g. ``"optimizer__"`` for skorch's routed parameters.

    Examples
    --------
    >>> import torch
    >>> fused_optimizer_kwargs(torch.optim.Adam, "cpu")  # torch >= 2.4
    {'fused': True}
    >>> fused_optimizer_kwargs(torch.optim.RMSprop, "cpu")
    {}
    """
    if optimizer_class in _FUSED and _fused_works(optimizer_class,
                                                  str(torch.device(device))):
        return {prefix + "fused": True}
    return {}


@functools.cache
def _fused_works(optimizer_class, device):
    """Whether a fused ``optimizer_class`` builds and steps on ``device``."""
    try:
        parameter = torch.zeros(1, device=device, requires_grad=True)
        optimizer = optimizer_class([parameter], lr=1e-3, fused=True)
        parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
    except (RuntimeError, TypeError, ValueError, AssertionError):
        # (AssertionError: "Torch not compiled with CUDA enabled".)
        return False
    return True


class RowDataset(torch.utils.data.Dataset):
    """Rows of a dense tensor or of a scipy CSR matrix, fetched a batch at a time.

    Dense data is held as one float32 tensor on the training device, so a batch
    is one indexing operation. Sparse data stays sparse on the host and only the
    current batch is densified.
    """

    def __init__(self, X, device):
        self.device = device
        if sp.issparse(X):
            self.data = X.tocsr()
        else:
            self.data = as_tensor(X, device=device)

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        return self.batch(np.atleast_1d(index))[0]

    def batch(self, indices):
        """Return the rows ``indices`` (a tensor or array) as a float32 tensor."""
        if sp.issparse(self.data):
            rows = self.data[np.asarray(indices.cpu() if torch.is_tensor(indices)
                                        else indices)]
            return as_tensor(rows, device=self.device)
        if torch.is_tensor(indices):
            indices = indices.to(self.data.device)
        return self.data[indices]


class RowBatchLoader:
    """Iterate over a :class:`RowDataset` in (optionally shuffled) whole batches.

    Yields ``(X_batch, X_batch)``: for a reconstruction the target is the input.
    Shuffling uses torch's global RNG, which the estimators seed and fork
    (``utils.seeded``), so runs are repeatable.
    """

    def __init__(self, dataset, batch_size, shuffle=False):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        n_samples = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n_samples)
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.batch(order[start:start + self.batch_size])
                yield batch, batch
        elif sp.issparse(self.dataset.data):
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.batch(np.arange(start, min(start + self.batch_size,
                                                                n_samples)))
                yield batch, batch
        else:
            # Contiguous slices of the tensor: no copy at all.
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.data[start:start + self.batch_size]
                yield batch, batch


class NonFiniteLossGuard(Callback):
    """Stop training with a clear error as soon as a batch loss is NaN or inf."""

    def __init__(self, learning_rate=None):
        self.learning_rate = learning_rate

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        if loss is None:
            loss = net.history[-1, "batches", -1, "train_loss" if training else
                               "valid_loss"]
        loss = loss.item() if torch.is_tensor(loss) else float(loss)
        if not math.isfinite(loss):
            epoch = len(net.history)
            which = "training" if training else "validation"
            raise TrainingDivergedError(
                f"The {which} loss became {loss} in epoch {epoch}; training was "
                f"stopped. Lower learning_rate (it is {self.learning_rate}), or "
                "scale the input to a moderate range (e.g. StandardScaler or "
                "MinMaxScaler)."
            )


def unwrapped(module):
    """The user-level module inside a data-parallel wrapper (DDP's ``.module``).

    Under multi-GPU training (Accelerate) ``net.module_`` is a
    ``DistributedDataParallel`` wrapper; attributes such as the VAE's KL
    weight must be set on the module it wraps.
    """
    return getattr(module, "module", module)


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

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        terms = getattr(unwrapped(net.module_), "loss_terms", None)
        if training and terms:
            self.batches_.append(terms)

    def on_epoch_end(self, net, **kwargs):
        if not self.batches_:
            return
        for name in self.batches_[0]:
            values = torch.cat([terms[name].reshape(-1) for terms in self.batches_])
            net.history.record(f"train_{name}", float(values.double().mean()))
        self.batches_ = []


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


class _EarlyStopping(EarlyStopping):
    """skorch's EarlyStopping that can ignore warm-up epochs.

    The first ``delay`` epochs (while a loss weight is still being ramped up)
    neither count as misses nor provide the best weights. A relative threshold
    is taken of the score's magnitude, so that it also works for negative
    losses (a Gaussian VAE's negative ELBO).
    """

    def __init__(self, monitor="valid_loss", patience=5, threshold=1e-4,
                 threshold_mode="rel", lower_is_better=True, sink=print,
                 load_best=False, delay=0):
        super().__init__(monitor=monitor, patience=patience, threshold=threshold,
                         threshold_mode=threshold_mode,
                         lower_is_better=lower_is_better, sink=sink,
                         load_best=load_best)
        self.delay = delay

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) > self.delay:
            super().on_epoch_end(net, **kwargs)

    def _calc_new_threshold(self, score):
        if self.threshold_mode == "rel":
            change = self.threshold * abs(score)
            return score - change if self.lower_is_better else score + change
        return super()._calc_new_threshold(score)


class EpochProgressBar(Callback):
    """A tqdm progress bar over epochs (``verbose=1``)."""

    def __init__(self, total=None, description="fit"):
        self.total = total
        self.description = description

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=self.total, desc=self.description, unit="epoch",
                         file=sys.stderr, leave=False)

    def on_epoch_end(self, net, **kwargs):
        postfix = {"train_loss": f"{net.history[-1, 'train_loss']:.4g}"}
        if "valid_loss" in net.history[-1]:
            postfix["valid_loss"] = f"{net.history[-1, 'valid_loss']:.4g}"
        self.bar_.set_postfix(postfix, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()
        # A tqdm object cannot be pickled: drop it so the fitted model can be.
        del self.bar_


# Stands for ``module_`` in a pickled net's ``module`` (see __getstate__).
_SAME_AS_TRAINED_MODULE = "<the trained module_>"


class ReconstructionNet(NeuralNet):
    """A skorch net that trains a module to reconstruct its input.

    ``get_loss`` asks the module for its loss when it defines
    ``loss(output, X)`` (the VAE's ELBO, for example); otherwise it applies the
    criterion to the module's output and the input.
    """

    @property
    def _default_callbacks(self):
        # No PrintLog here: verbosity is chosen by the estimator (make_net).
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
        ]

    # Per-batch bookkeeping, trimmed: skorch walks the module tree to set the
    # training mode and calls every callback's (mostly empty) hooks three times
    # per batch, which costs ~10% of a small MLP's step on the CPU.
    def _set_training(self, training=True):
        modules = [getattr(self, name + "_") for name in self._modules + self._criteria]
        if all(getattr(module, "training", training) == training
               for module in modules):
            return
        super()._set_training(training)

    def _hook_listeners(self, method_name):
        """The callbacks that implement ``method_name`` (cached per callbacks_)."""
        cache = self.__dict__.get("_listeners")
        if cache is None or cache[0] is not self.callbacks_:
            # (Re)built whenever callbacks_ is a new list (initialize, or the
            # estimator dropping fit-only callbacks after fit).
            cache = self._listeners = (self.callbacks_, {})
        listeners = cache[1]
        if method_name not in listeners:
            empty = getattr(Callback, method_name, None)
            listeners[method_name] = [
                callback for _, callback in self.callbacks_
                if method_name in vars(callback)
                or getattr(type(callback), method_name, None) is not empty
            ]
        return listeners[method_name]

    def notify(self, method_name, **cb_kwargs):
        """skorch's notify, skipping callbacks that do not implement the hook."""
        getattr(self, method_name)(self, **cb_kwargs)
        for callback in self._hook_listeners(method_name):
            getattr(callback, method_name)(self, **cb_kwargs)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_listeners", None)
        # skorch keeps the module instance it was given as ``module``, the same
        # object as the trained ``module_``. It saves ``module_`` with
        # torch.save (mapped to the CPU on load where CUDA is missing) but
        # would pickle ``module`` plainly: the weights twice, and a model
        # trained on a GPU that cannot be unpickled without one.
        if state.get("module") is self.__dict__.get("module_"):
            state["module"] = _SAME_AS_TRAINED_MODULE
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if isinstance(self.module, str) and self.module == _SAME_AS_TRAINED_MODULE:
            self.module = self.module_

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        # history.new_batch(), without History's generic indexing.
        list.__getitem__(self.history, -1)["batches"].append({})

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch loop, writing the batch rows of the history directly.

        Same notifications and history entries as skorch's (``<prefix>_loss``
        and ``<prefix>_batch_size`` per batch, ``<prefix>_batch_count`` per
        epoch); our loaders always yield ``(X, X)`` tuples.
        """
        if iterator is None:
            return
        batches = list.__getitem__(self.history, -1)["batches"]
        batch_count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            row = batches[-1]
            row[prefix + "_loss"] = step["loss"].item()
            row[prefix + "_batch_size"] = len(batch[0])
            self.notify("on_batch_end", batch=batch, training=training, **step)
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)

    def train_step(self, batch, **fit_params):
        """One optimizer update on ``batch``.

        skorch steps the optimizer through a closure, with a step accumulator
        and an ``on_grad_computed`` notification. For the closure-free
        optimizers of :data:`OPTIMIZERS`, with no callback listening to
        ``on_grad_computed`` and skorch's own optimizer stepping, this is the
        same update with less Python per batch; anything else takes skorch's
        path.
        """
        if (fit_params or type(self)._step_optimizer is not NeuralNet._step_optimizer
                or self._hook_listeners("on_grad_computed")
                or not all(type(getattr(self, name + "_")) in _CLOSURE_FREE
                           for name in self._optimizers)):
            return super().train_step(batch, **fit_params)
        self._zero_grad_optimizer()
        step = self.train_step_single(batch)
        for name in self._optimizers:
            getattr(self, name + "_").step()
        return step

    def infer(self, x, **fit_params):
        # Batches are already tensors (on the training device): skip skorch's
        # generic conversion of dicts, arrays and frames.
        if torch.is_tensor(x) and not fit_params:
            return self.module_(x.to(self.device))
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        module_loss = getattr(self.module_, "loss", None)
        if module_loss is not None:
            return module_loss(y_pred, y_true)
        return self.criterion_(y_pred, y_true)


class _ModuleDefinedLoss(torch.nn.Module):
    """The criterion of nets whose module defines ``loss`` (never called)."""

    def forward(self, y_pred, y_true):
        raise RuntimeError("This module computes its own loss; see get_loss.")


def _noop(*args, **kwargs):
    """A sink that prints nothing."""


def make_net(
    module,
    *,
    criterion,
    max_iter,
    batch_size,
    learning_rate,
    optimizer,
    weight_decay,
    device,
    early_stopping,
    valid_dataset,
    n_iter_no_change,
    tol,
    verbose,
    callbacks,
    warmup_epochs=0,
):
    """Build the :class:`ReconstructionNet` an estimator trains.

    Parameters mirror the estimators' (see ``AutoencoderTransformer``).
    ``valid_dataset`` is the held-out :class:`RowDataset` when
    ``early_stopping`` is on, else None. ``tol``/``n_iter_no_change`` stop
    training when the monitored loss (validation loss with early stopping, else
    training loss) has not improved by a relative ``tol`` for
    ``n_iter_no_change`` epochs; ``tol=None`` never stops early on the training
    loss. The first ``warmup_epochs`` epochs do not count for either kind of
    stopping (a loss weight is being annealed then). Modules that report
    ``loss_terms`` get them recorded per epoch (:class:`LossTermsRecorder`).
    """
    optimizer_class = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    fused = fused_optimizer_kwargs(optimizer_class, device, prefix="optimizer__")
    all_callbacks = [("nonfinite_loss_guard", NonFiniteLossGuard(learning_rate))]
    if hasattr(module, "loss_terms"):
        all_callbacks.append(("loss_terms", LossTermsRecorder()))
    if early_stopping:
        all_callbacks.append(("early_stopping", _EarlyStopping(
            monitor="valid_loss", patience=n_iter_no_change,
            threshold=tol or 0.0, threshold_mode="rel", load_best=True, sink=_noop,
            delay=warmup_epochs,
        )))
    elif tol is not None:
        all_callbacks.append(("train_loss_plateau", _EarlyStopping(
            monitor="train_loss", patience=n_iter_no_change,
            threshold=tol, threshold_mode="rel", load_best=False, sink=_noop,
            delay=warmup_epochs,
        )))
    if verbose == 1:
        all_callbacks.append(("progress_bar", EpochProgressBar(total=max_iter)))
    elif verbose >= 2:
        all_callbacks.append(("print_log", PrintLog(sink=print)))
    all_callbacks.extend(callbacks or [])

    return ReconstructionNet(
        module,
        criterion=_ModuleDefinedLoss if criterion is None else criterion,
        optimizer=optimizer_class,
        lr=learning_rate,
        optimizer__weight_decay=weight_decay,
        max_epochs=max_iter,
        batch_size=batch_size,
        iterator_train=RowBatchLoader,
        iterator_train__shuffle=True,
        iterator_valid=RowBatchLoader,
        train_split=predefined_split(valid_dataset) if early_stopping else None,
        callbacks=all_callbacks,
        device=device,
        verbose=verbose,
        # Pickled estimators hold whole modules; trust comes from the pickle itself.
        torch_load_kwargs={"weights_only": False},
        **fused,
    )
