"""The engine's skorch net: :class:`ReconstructionNet`.

Compared with a plain ``skorch.NeuralNet``:

* the target of a reconstruction is the input itself, so no ``y`` is copied
  (the loaders yield ``(X, X)``);
* a module that defines ``loss(output, X)`` (the VAE's ELBO) computes its own
  loss (:func:`module_loss`);
* per-batch bookkeeping is trimmed (see "skorch internals" below);
* training forward passes may run under ``torch.autocast`` in
  ``training_autocast_dtype`` (bfloat16), with float32 weights, gradients and
  loss; validation and inference stay in float32.

**skorch internals.** The methods below override skorch internals to cut
per-batch Python on small steps (``_set_training``, ``notify`` through
``_hook_listeners``, ``on_batch_begin``, ``run_single_epoch``, ``train_step``,
``infer``, and :class:`EpochMeanLoss` for ``PassthroughScoring``). They are
the only overrides of skorch's training loop, are written for the skorch
versions pinned in ``pyproject.toml``, and
``tests/engine/test_net.py::test_skorch_internals_are_as_overridden`` fails loudly
if a new skorch changes what they replace.

**The plain step.** When nothing can observe the difference (no callback on
``on_batch_begin``, ``on_batch_end`` or ``on_grad_computed``, no
``fit_params``, closure-free optimizers, none of the step methods overridden
by a subclass such as the Accelerate net), an epoch runs the hand-written
loop: zero the gradients, forward, loss, backward, step, with the module put
in training (or eval) mode once per epoch. Everything else takes skorch's
path. Either way each batch records ``<prefix>_loss`` and
``<prefix>_batch_size`` in the history, and callbacks that define
``on_batch_loss(net, loss, training)`` (the engine's own per-batch hook, given
the batch loss as a float) are called after every batch: the training
policy's divergence check and the loss-terms recorder use it.
"""

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer, PassthroughScoring

from .._utils import map_tensors
from ._optimizers import CLOSURE_FREE

__all__ = [
    "POLICY_CALLBACK_NAME",
    "EpochMeanLoss",
    "ModuleDefinedLoss",
    "ReconstructionNet",
    "module_loss",
]

# The name of the training-policy callback in a net's callbacks_.
POLICY_CALLBACK_NAME = "training_policy"


def module_loss(module, criterion, y_pred, y_true):
    """The loss of a batch: the module's own ``loss`` if it has one.

    The one loss lookup of the engine, used by the plain and the accelerated
    nets (the latter passes the module it unwrapped from its DDP wrapper).
    """
    own_loss = getattr(module, "loss", None)
    if own_loss is not None:
        return own_loss(y_pred, y_true)
    return criterion(y_pred, y_true)


# Stands for ``module_`` in a pickled net's ``module`` (see __getstate__).
_SAME_AS_TRAINED_MODULE = "<the trained module_>"


class ReconstructionNet(NeuralNet):
    """A skorch net that trains a module to reconstruct its input.

    ``get_loss`` asks the module for its loss when it defines
    ``loss(output, X)`` (the VAE's ELBO, for example); otherwise it applies the
    criterion to the module's output and the input.

    ``training_autocast_dtype`` (an attribute, default None: float32) runs
    the forward passes of training under ``torch.autocast`` in that dtype;
    the outputs are cast back to float32 before the loss.
    """

    training_autocast_dtype = None

    def _forward(self, X):
        """The module's output on ``X``, under autocast when training in it."""
        dtype = self.training_autocast_dtype
        if dtype is None or not self.module_.training:
            return self.module_(X)
        with torch.autocast(torch.device(self.device).type, dtype=dtype):
            output = self.module_(X)
        return map_tensors(output, _as_float32)

    @property
    def _default_callbacks(self):
        # No PrintLog here: the training policy prints (verbose=2).
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", EpochMeanLoss(name="train_loss", on_train=True)),
            ("valid_loss", EpochMeanLoss(name="valid_loss")),
        ]

    # Per-batch bookkeeping, trimmed: skorch walks the module tree to set the
    # training mode and calls every callback's (mostly empty) hooks three times
    # per batch, a visible share of a small MLP's step on the CPU.
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

        Same history entries as skorch's (``<prefix>_loss`` and
        ``<prefix>_batch_size`` per batch, ``<prefix>_batch_count`` per
        epoch), through the plain step when nothing can observe it (see the
        module docstring); our loaders always yield ``(X, X)`` tuples.
        """
        if iterator is None:
            return
        batches = list.__getitem__(self.history, -1)["batches"]
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        loss_watchers = self._hook_listeners("on_batch_loss")
        plain_step = (self._plain_training_step if training
                      else self._plain_validation_step)
        if self._can_take_plain_steps(fit_params):
            self._set_training(training)
        else:
            plain_step = None
        batch_count = 0
        for batch in iterator:
            X = batch[0]
            if plain_step is not None:
                value = plain_step(X).item()
                batches.append({loss_key: value, size_key: X.shape[0]})
            else:
                self.notify("on_batch_begin", batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                value = step["loss"].item()
                row = batches[-1]
                row[loss_key] = value
                row[size_key] = X.shape[0]
                self.notify("on_batch_end", batch=batch, training=training, **step)
            for watcher in loss_watchers:
                watcher.on_batch_loss(self, value, training)
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)

    def _can_take_plain_steps(self, fit_params):
        """Whether an epoch may skip skorch's per-batch path (module docstring)."""
        cls = type(self)
        return not (
            fit_params
            or self._hook_listeners("on_batch_begin")
            or self._hook_listeners("on_batch_end")
            or self._hook_listeners("on_grad_computed")
            or cls.on_batch_begin is not ReconstructionNet.on_batch_begin
            or cls.on_batch_end is not NeuralNet.on_batch_end
            or cls.train_step is not ReconstructionNet.train_step
            or cls.train_step_single is not NeuralNet.train_step_single
            or cls.validation_step is not NeuralNet.validation_step
            or cls.infer is not ReconstructionNet.infer
            or cls.get_loss is not ReconstructionNet.get_loss
            or cls._zero_grad_optimizer is not NeuralNet._zero_grad_optimizer
            or cls._step_optimizer is not NeuralNet._step_optimizer
            or not self._optimizers_are_closure_free()
        )

    def _optimizers_are_closure_free(self):
        return all(type(getattr(self, name + "_")) in CLOSURE_FREE
                   for name in self._optimizers)

    def _plain_training_step(self, X):
        """One update, as a hand-written loop does it; returns the loss tensor."""
        optimizers = [getattr(self, name + "_") for name in self._optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss = module_loss(self.module_, self.criterion_, self._forward(X), X)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        return loss

    def _plain_validation_step(self, X):
        with torch.no_grad():
            return module_loss(self.module_, self.criterion_, self.module_(X), X)

    def train_step(self, batch, **fit_params):
        """One optimizer update on ``batch`` (when the plain step does not apply).

        skorch steps the optimizer through a closure, with a step accumulator
        and an ``on_grad_computed`` notification. For the closure-free
        optimizers of :data:`OPTIMIZERS`, with no callback listening to
        ``on_grad_computed`` and skorch's own optimizer stepping, this is the
        same update with less Python per batch; anything else takes skorch's
        path.
        """
        if (fit_params or type(self)._step_optimizer is not NeuralNet._step_optimizer
                or self._hook_listeners("on_grad_computed")
                or not self._optimizers_are_closure_free()):
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
            return self._forward(x.to(self.device))
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return module_loss(self.module_, self.criterion_, y_pred, y_true)


def _as_float32(tensor):
    return tensor.float() if tensor.is_floating_point() else tensor


class EpochMeanLoss(PassthroughScoring):
    """skorch's ``PassthroughScoring``, reading the epoch's batch rows directly.

    Records the same ``<name>`` (the batch-size-weighted mean of the batch
    losses, as ``np.average``) and ``<name>_best`` entries, without skorch's
    generic history indexing and numpy calls on a handful of numbers, whose
    fixed cost per epoch shows on small data.
    """

    def get_avg_score(self, history):
        size_key = ("train" if self.on_train else "valid") + "_batch_size"
        total = weight = 0.0
        for row in list.__getitem__(history, -1)["batches"]:
            if self.name in row:
                total += row[self.name] * row[size_key]
                weight += row[size_key]
        return np.float64(total / weight)

    def on_epoch_end(self, net, **kwargs):
        batches = list.__getitem__(net.history, -1)["batches"]
        if not any(self.name in row for row in batches):
            return  # no validation data
        score = self.get_avg_score(net.history)
        is_best = self._is_best_score(score)
        if is_best:
            self.best_score_ = score
        net.history.record(self.name, score)
        if is_best is not None:
            net.history.record(self.name + "_best", bool(is_best))


class ModuleDefinedLoss(torch.nn.Module):
    """The criterion of nets whose module defines ``loss`` (never called)."""

    def forward(self, y_pred, y_true):
        raise RuntimeError("This module computes its own loss; see get_loss.")
