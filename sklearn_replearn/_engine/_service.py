"""The engine as a service: build, train and strip a net for an estimator.

An estimator hands over its module and its training settings and gets back a
trained net and a :class:`TrainingRecord`; it never builds the engine's
datasets, names its callbacks or rebuilds a net for Accelerate itself.
"""

import numpy as np
import torch
from skorch.helper import predefined_split
from skorch.history import History

from .._utils import map_tensors, resolve_device
from ._callbacks import (
    LinearWarmup,
    LossTermsRecorder,
    check_callbacks,
    make_policy_callback,
)
from ._data import RowBatchLoader, RowDataset
from ._net import POLICY_CALLBACK_NAME, ModuleDefinedLoss, ReconstructionNet
from ._optimizers import check_optimizer, fused_optimizer_kwargs
from ._record import TrainingRecord, training_record

__all__ = [
    "TrainingRecord",
    "build_net",
    "load_net_state",
    "net_from_state",
    "net_settings",
    "net_state",
    "strip_net",
    "train_net",
    "training_device",
    "update_net",
]

# The policy callback's name is the engine's own business: estimators read
# the policy through TrainingRecord.
_POLICY = POLICY_CALLBACK_NAME


def training_device(device, accelerator=None):
    """The device a net trains on: ``device`` resolved, or the accelerator's.

    ``device`` is the estimator's parameter (``"auto"``, ``"cpu"``, ...).
    With an accelerator it must be ``"auto"`` or the accelerator's own device.
    """
    if accelerator is None:
        return resolve_device(device)
    from ._accelerate import accelerator_device

    return accelerator_device(accelerator, device)


def build_net(module, *, criterion, device, owner, max_iter, batch_size,
              learning_rate, optimizer, weight_decay, early_stopping,
              n_iter_no_change, tol, verbose, callbacks=None, valid_X=None,
              warmup=None, accelerator=None, reference_loss=None,
              autocast_dtype=None):
    """Build the net that trains ``module`` to reconstruct its input.

    Parameters mirror the estimators' (see ``AutoencoderTransformer``).
    ``criterion`` is a torch loss class, or None when the module defines
    ``loss``. ``valid_X`` is the held-out data when ``early_stopping`` (the
    best epoch's weights are then restored). ``warmup=(attribute, value,
    n_epochs)`` ramps a module attribute from 0 to ``value`` (the VAE's KL
    weight); those epochs do not count for stopping. ``callbacks`` are the
    user's skorch callbacks (already copied). ``accelerator`` trains through
    Hugging Face Accelerate. ``reference_loss`` is the loss the divergence
    check measures explosions from (default: the first batch's).
    """
    optimizer_class = check_optimizer(optimizer)
    all_callbacks = []
    warmup_epochs = 0
    if warmup is not None:
        attribute, value, warmup_epochs = warmup
        all_callbacks.append(("warmup", LinearWarmup(attribute, value, warmup_epochs)))
    if hasattr(module, "loss_terms"):
        all_callbacks.append(("loss_terms", LossTermsRecorder()))
    all_callbacks.extend(check_callbacks(callbacks))
    # Last: it may end training at the end of an epoch the others have seen.
    all_callbacks.append((_POLICY, make_policy_callback(
        owner=owner, max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
        warmup_epochs=warmup_epochs, verbose=verbose, learning_rate=learning_rate,
        early_stopping=early_stopping, reference_loss=reference_loss,
    )))
    params = dict(
        criterion=ModuleDefinedLoss if criterion is None else criterion,
        optimizer=optimizer_class,
        lr=learning_rate,
        optimizer__weight_decay=weight_decay,
        max_epochs=max_iter,
        batch_size=batch_size,
        iterator_train=RowBatchLoader,
        iterator_train__shuffle=True,
        iterator_valid=RowBatchLoader,
        train_split=(predefined_split(RowDataset(valid_X, device))
                     if early_stopping else None),
        callbacks=all_callbacks,
        device=str(device),
        # The policy prints (verbose=2) and draws the bar (verbose=1).
        verbose=0,
        # Pickled estimators hold whole modules; trust comes from the pickle itself.
        torch_load_kwargs={"weights_only": False},
        **fused_optimizer_kwargs(optimizer_class, device, prefix="optimizer__"),
    )
    if accelerator is None:
        net = ReconstructionNet(module, **params)
        net.training_autocast_dtype = autocast_dtype
        return net
    from ._accelerate import AcceleratedReconstructionNet, check_accelerator

    check_accelerator(accelerator)
    return AcceleratedReconstructionNet(module, accelerator=accelerator, **params)


def train_net(net, X, *, epochs=None):
    """Train ``net`` on X: a whole fit (``epochs=None``) or more epochs.

    ``epochs=None`` trains from scratch for up to ``max_iter`` epochs under
    the stopping rule; an int continues training the (initialised) net for
    that many epochs, as ``partial_fit`` does. Returns the
    :class:`TrainingRecord` of all epochs the net has trained.
    """
    data = RowDataset(X, net.device)
    if epochs is None:
        net.fit(data)
    else:
        if not net.initialized_:
            net.initialize()
        # The session's progress counts these epochs, not max_iter.
        dict(net.callbacks_)[_POLICY].n_epochs = epochs
        net.partial_fit(data, epochs=epochs)
    return training_record(net)


def strip_net(net):
    """Remove what only ``fit`` needs from a trained net.

    The held-out validation rows (``train_split``) and the stopping rule
    would otherwise be pickled with the model (and stay on the GPU); later
    ``partial_fit`` calls train one epoch each, with no early stopping.
    """
    net.train_split = None
    callback = dict(net.callbacks_)[_POLICY]
    callback.restore_best = False
    callback.policy.tol = None


def net_settings(net):
    """The training settings :func:`update_net` changes, as they are now."""
    callbacks = dict(net.callbacks_)
    warmup = callbacks.get("warmup")
    return {
        "learning_rate": net.lr,
        "weight_decay": net.optimizer_.param_groups[0]["weight_decay"],
        "batch_size": net.batch_size,
        "verbose": callbacks[_POLICY].policy.verbose,
        "warmup": (None if warmup is None else
                   (warmup.attribute, warmup.value, warmup.n_epochs)),
    }


def update_net(net, *, learning_rate, weight_decay, batch_size, verbose,
               warmup=None):
    """Apply the estimator's current training settings to a built net.

    ``partial_fit`` continues training a net built by an earlier call; these
    settings take effect from the next epoch (the optimizer keeps its state).
    ``warmup`` is as for :func:`build_net` (the VAE's ``beta`` and
    ``kl_warmup``).
    """
    for group in net.optimizer_.param_groups:
        group["lr"] = learning_rate
        group["weight_decay"] = weight_decay
    net.lr = learning_rate
    net.batch_size = batch_size
    callbacks = dict(net.callbacks_)
    policy = callbacks[_POLICY].policy
    policy.verbose = verbose
    policy.divergence_hint = f"Lower learning_rate (it is {learning_rate})"
    if warmup is not None and "warmup" in callbacks:
        ramp = callbacks["warmup"]
        ramp.attribute, ramp.value, ramp.n_epochs = warmup
        policy.warmup_epochs = warmup[2]


def net_state(net):
    """A trained net's state as plain data (numpy arrays, numbers, lists, dicts).

    What is needed to continue training and to transform: the module's
    weights, the optimizer's state and the per-epoch history (without its
    per-batch rows). Nothing in it is a torch, skorch or user object, so it
    pickles without code references and ``skops`` loads it trusting nothing
    else. The module itself is rebuilt by the estimator from its parameters
    (:func:`net_from_state`).
    """
    return {
        "device": str(net.device),
        # Copies: on the CPU .numpy() would share memory with the tensors,
        # which training goes on changing in place.
        "module": {name: tensor.detach().cpu().numpy().copy()
                   for name, tensor in net.module_.state_dict().items()},
        "optimizer": _plain(net.optimizer_.state_dict()),
        "history": [{key: value for key, value in row.items() if key != "batches"}
                    for row in net.history],
    }


def net_from_state(net, state):
    """Initialise ``net`` (built by :func:`build_net`) from :func:`net_state`.

    A state saved on a device this machine lacks (no GPU, fewer GPUs than the
    saved index, no MPS) is loaded onto the CPU, as skorch does when
    unpickling without CUDA.
    """
    device = state["device"]
    try:
        resolve_device(device)
    except ValueError:
        device = "cpu"
    net.set_params(device=device)
    net.module.to(device)
    net.initialize()
    load_net_state(net, state)
    losses = [row["train_loss"] for row in state["history"] if "train_loss" in row]
    if losses:
        # Divergence is judged against where training started.
        dict(net.callbacks_)[_POLICY].policy.reference_loss = losses[0]
    return net


def load_net_state(net, state):
    """Put an initialised net back in the :func:`net_state` it had."""
    net.module_.load_state_dict({name: torch.from_numpy(np.array(array))
                                 for name, array in state["module"].items()})
    # (Optimizer.load_state_dict moves each buffer to its parameter's device.)
    net.optimizer_.load_state_dict(_tensors(state["optimizer"]))
    net.history = History([{**row, "batches": []} for row in state["history"]])


def _plain(tree):
    """``tree`` with every tensor replaced by a numpy copy (recursively)."""
    return map_tensors(tree, lambda tensor: tensor.detach().cpu().numpy().copy())


def _tensors(tree):
    """The inverse of :func:`_plain`: numpy arrays back to CPU tensors."""
    return map_tensors(tree, lambda array: torch.from_numpy(np.array(array)))
