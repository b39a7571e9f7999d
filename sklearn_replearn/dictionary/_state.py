"""How DictionaryLearner drives ``sparse/``: state, minibatch size, sessions.

The estimator keeps its fitted state as plain data (numpy arrays, numbers),
which pickle and skops store; training runs on the torch objects of
``sparse/`` (``OnlineDictionaryLearning``, ``TaskDrivenPhase``). These
functions convert one into the other, upgrade the state of models saved
before a parameter existed, resolve ``batch_size="auto"`` and run a session
of online epochs under the training policy.
"""

import torch

from ..utils import as_tensor, map_tensors, resolve_device, seeded, to_numpy
from ..utils._labels import encode_class_labels
from ..utils._sklearn_compat import validate_params_now
from ._checks import (
    check_same_classes,
    check_same_n_components,
    check_squares_fit_float32,
    check_two_classes,
    tensor_copy,
)
from ._online import OnlineDictionaryLearning
from ._task_driven import LogisticHead, TaskDrivenPhase, TaskScales

__all__ = [
    "SUPERVISED_DEFAULTS",
    "auto_batch_rows",
    "learner_from_fitted",
    "partial_fit_epoch",
    "run_online",
    "store_fitted",
    "task_phase_from_fitted",
    "upgraded_state",
]

# The supervised parameters, and the values that reproduce the fits of
# pickles made before they existed (absolute supervision_weight, head on the
# codes themselves): see upgraded_state.
SUPERVISED_DEFAULTS = dict(input_noise=0.3, label_smoothing=0.1, head_l2=1e-2,
                           label_scale=0.5, average_decay=0.95,
                           validation_fraction=0.0)


# batch_size="auto" (DictionaryLearner's docstring): 256 rows, up to a 32nd
# of the rows of an unsupervised fit, at most 1024.
_AUTO_BATCH = 256
_AUTO_BATCH_MAX = 1024
_AUTO_STEPS_PER_EPOCH = 32


def auto_batch_rows(batch_size, n_samples, *, supervised):
    """``batch_size``, with "auto" resolved for ``n_samples`` rows."""
    if batch_size != "auto":
        return int(batch_size)
    if supervised:
        return _AUTO_BATCH
    return min(max(_AUTO_BATCH, n_samples // _AUTO_STEPS_PER_EPOCH), _AUTO_BATCH_MAX)


def run_online(learner, X, policy, *, batch_size, n_epochs, checks=1, codes=None,
               whole_data=False):
    """One session of unsupervised online epochs over X; the epochs begun."""
    if codes is None:
        codes = X.new_zeros((X.shape[0], learner.dictionary.shape[0]))
    measured, n_begun = policy.n_epochs, None
    with policy.session(n_epochs * checks) as session:
        n_begun = learner.run(X, codes, session, n_epochs=n_epochs,
                              batch_size=batch_size, checks_per_epoch=checks,
                              whole_data=whole_data)
    if n_begun is None:  # interrupted: the epochs that were measured
        n_begun = -(-(policy.n_epochs - measured) // checks)
    return n_begun


def upgraded_state(state):
    """``state`` of a pickled DictionaryLearner, with what older versions lacked."""
    # Pickles made before the supervised parameters existed: their values
    # then, and the scales of 1 that their absolute supervision_weight
    # and head on the raw codes amount to.
    if "classes_" in state and "_task_loss_scale" not in state:
        state = {"_task_loss_scale": 1.0, "_code_scale": 1.0, **state}
    return {**SUPERVISED_DEFAULTS, **state}


def learner_from_fitted(estimator, device):
    """The fitted state as an ``OnlineDictionaryLearning`` on ``device``."""
    # Copies: the learner trains them in place, and a failed call must
    # leave the fitted arrays untouched (as_tensor may share their memory).
    return OnlineDictionaryLearning(
        tensor_copy(estimator.components_, device),
        tensor_copy(estimator._A, device),
        tensor_copy(estimator._B, device),
        n_steps=estimator.n_steps_, **estimator._learner_settings(),
    )


def task_phase_from_fitted(estimator, learner, n_classes, device):
    """A joint phase continuing the fitted head, input noise and Adam."""
    scales = None
    if hasattr(estimator, "head_coef_"):
        # None until measured (a fit interrupted before its joint phase).
        if estimator._task_loss_scale is not None:
            scales = TaskScales(estimator._input_noise_std,
                                estimator._task_loss_scale, estimator._code_scale)
        head = LogisticHead.from_unscaled(
            tensor_copy(estimator.head_coef_, device),
            tensor_copy(estimator.head_intercept_, device),
            1.0 if scales is None else scales.code_scale)
    else:
        head = LogisticHead.zeros(n_classes, learner.dictionary)
    saved = getattr(estimator, "_optimizer_state", None)
    if saved is not None:
        saved = map_tensors(saved, lambda array: torch.from_numpy(array.copy()))
    return TaskDrivenPhase(
        learner, head, supervision=estimator._supervision(),
        learning_rate=estimator.learning_rate, scales=scales,
        optimizer_state=saved,
    )


def store_fitted(estimator, learner, policy, dtype, *, reset, head=None,
                 classes=None, scales=None, optimizer_state=None, n_epochs=None):
    """Copy the trained state into fitted attributes (numpy, picklable).
    Without ``reset`` epochs add up and an unsupervised call keeps the
    head, input noise and Adam state. ``n_epochs``: the epochs run, when
    not one per value of the policy's loss curve."""
    estimator.components_ = to_numpy(learner.dictionary, dtype=dtype)
    estimator._A = to_numpy(learner.A)
    estimator._B = to_numpy(learner.B)
    estimator.n_steps_ = learner.n_steps
    previous = [] if reset else estimator.loss_curve_
    estimator.loss_curve_ = list(previous) + list(policy.loss_curve)
    if n_epochs is None:
        n_epochs = len(policy.loss_curve)
    estimator.n_iter_ = (0 if reset else estimator.n_iter_) + n_epochs
    if reset:
        for name in ("classes_", "head_coef_", "head_intercept_"):
            if hasattr(estimator, name):
                delattr(estimator, name)
    if head is None and not reset:
        return
    # The supervised scales (TaskScales), measured once and kept.
    estimator._input_noise_std = None if scales is None else scales.noise_std
    estimator._task_loss_scale = None if scales is None else scales.loss_scale
    estimator._code_scale = None if scales is None else scales.code_scale
    estimator._optimizer_state = (None if optimizer_state is None else
                             map_tensors(optimizer_state, to_numpy))
    if head is not None:
        if classes is not None:
            estimator.classes_ = classes
        estimator.head_coef_ = to_numpy(head.unscaled_coef(), dtype=dtype)
        estimator.head_intercept_ = to_numpy(head.intercept, dtype=dtype)


def partial_fit_epoch(estimator, X, y, classes):
    """One epoch of ``DictionaryLearner.partial_fit`` on X (labelled or not)."""
    first_call = not hasattr(estimator, "components_")
    if first_call:
        validate_params_now(estimator)
        estimator._check_params()
    X = estimator._validate_X(X, reset=first_call)
    if not first_call:
        check_same_n_components(estimator.n_components, estimator.components_,
                                estimator._resolved_n_components(X.shape[1]))
    supervised = y is not None and estimator.supervision_weight > 0
    has_head = hasattr(estimator, "classes_")
    if supervised:
        if has_head and classes is not None:
            check_same_classes(classes, estimator.classes_)
        known = estimator.classes_ if has_head else classes
        head_classes, y_index = encode_class_labels(y, X.shape[0], classes=known)
        if not has_head:
            check_two_classes(head_classes, "the first supervised partial_fit")
        check_squares_fit_float32(X, supervised=True)
    device = estimator._inference_device() if not first_call else resolve_device(
        estimator.device)
    X_t = as_tensor(X, device=device)
    # One epoch, no stopping rule; a progress bar only in fit. Divergence
    # is judged against the largest epoch loss so far, so a run of calls
    # cannot creep up unnoticed.
    policy = estimator._training_policy(1, None, bar=False)
    if getattr(estimator, "loss_curve_", None):
        policy.reference_loss = max(estimator.loss_curve_)
    offset = 0 if first_call else estimator.n_iter_
    with seeded(estimator.random_state, device, offset=offset):
        if first_call:
            learner = OnlineDictionaryLearning.initial(
                X_t, estimator._resolved_n_components(X.shape[1]),
                **estimator._learner_settings())
        else:
            learner = estimator._learner(device)
        codes = X_t.new_zeros((X.shape[0], learner.dictionary.shape[0]))
        if not supervised:
            estimator._run_online(learner, X_t, policy, n_epochs=1, codes=codes)
            estimator._store(learner, policy, X.dtype, reset=first_call, n_epochs=1)
            return estimator
        phase = estimator._task_phase(learner, len(head_classes), device)
        y_t = torch.as_tensor(y_index, dtype=torch.long, device=device)
        with policy.session(1) as session:
            phase.run(X_t, y_t, codes, session, n_epochs=1,
                      batch_size=estimator._batch_rows(X.shape[0], supervised=True))
    estimator._store(learner, policy, X.dtype, reset=first_call, head=phase.head,
                classes=None if has_head else head_classes,
                scales=phase.scales,
                optimizer_state=phase.optimizer_state())
    return estimator
