"""DictionaryLearner's fitted state, and how training objects come from it.

The estimator keeps its fitted state as plain data (numpy arrays, numbers),
which pickle and skops store; training runs on torch objects
(``OnlineDictionaryLearning``, ``TaskDrivenPhase``). :class:`FittedDictionary`
is that state as one explicit object: it builds the training objects from
itself and, after training, gives the next state. The estimator reads and
writes its attributes from and to it (``FittedDictionary.ATTRIBUTES``) in one
place each. Also here: ``batch_size="auto"`` and a session of online epochs
under the training policy.
"""

from dataclasses import dataclass, replace

import numpy as np
import torch

from .._utils import map_tensors, to_numpy
from ._checks import tensor_copy
from ._online import OnlineDictionaryLearning
from ._task_driven import LogisticHead, TaskDrivenPhase, TaskScales

__all__ = ["FittedDictionary", "auto_batch_rows", "run_online", "task_phase"]

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


@dataclass(frozen=True)
class FittedDictionary:
    """What a fit leaves: the dictionary, its statistics and the supervised head.

    Parameters
    ----------
    components : ndarray of shape (n_components, n_features)
        The atoms, in the training data's float dtype.
    A, B : ndarray
        The online algorithm's sufficient statistics (float32).
    n_steps : int
        Minibatch updates behind the statistics.
    n_iter : int
        Epochs run since the last ``fit``.
    loss_curve : list of float
        The policy's loss at each check since the last ``fit``.
    classes, head_coef, head_intercept : ndarray or None
        The supervised head (None: no supervised training yet).
    input_noise_std, task_loss_scale, code_scale : float or None
        The supervised scales (``TaskScales``), measured once and kept; None
        until measured.
    optimizer_state : dict or None
        The joint phase's Adam state, as numpy arrays.
    """

    components: np.ndarray
    A: np.ndarray
    B: np.ndarray
    n_steps: int
    n_iter: int
    loss_curve: list
    classes: np.ndarray | None = None
    head_coef: np.ndarray | None = None
    head_intercept: np.ndarray | None = None
    input_noise_std: float | None = None
    task_loss_scale: float | None = None
    code_scale: float | None = None
    optimizer_state: dict | None = None

    # Field -> the estimator's attribute (public ones documented there).
    ATTRIBUTES = {
        "components": "components_", "A": "_A", "B": "_B", "n_steps": "n_steps_",
        "n_iter": "n_iter_", "loss_curve": "loss_curve_", "classes": "classes_",
        "head_coef": "head_coef_", "head_intercept": "head_intercept_",
        "input_noise_std": "_input_noise_std", "task_loss_scale": "_task_loss_scale",
        "code_scale": "_code_scale", "optimizer_state": "_optimizer_state",
    }
    # Attributes that exist only after supervised training.
    SUPERVISED_ONLY = ("classes", "head_coef", "head_intercept")

    @property
    def supervised(self):
        return self.head_coef is not None

    def learner(self, settings, device):
        """The state as an ``OnlineDictionaryLearning`` on ``device``."""
        # Copies: the learner trains them in place, and a failed call must
        # leave the fitted arrays untouched (as_tensor may share their memory).
        return OnlineDictionaryLearning(
            tensor_copy(self.components, device), tensor_copy(self.A, device),
            tensor_copy(self.B, device), n_steps=self.n_steps, **settings)

    @classmethod
    def after_training(cls, previous, learner, policy, dtype, *, head=None,
                       classes=None, scales=None, optimizer_state=None,
                       n_epochs=None):
        """The state after training ``learner`` under ``policy``.

        ``previous`` is the state training continued (None: a new fit). When
        continued, epochs and losses add up, and an unsupervised call keeps
        the head, the scales and the Adam state. ``n_epochs``: the epochs run,
        when not one per value of the policy's loss curve.
        """
        if n_epochs is None:
            n_epochs = len(policy.loss_curve)
        trained = dict(
            components=to_numpy(learner.dictionary, dtype=dtype),
            A=to_numpy(learner.A), B=to_numpy(learner.B), n_steps=learner.n_steps,
            n_iter=(0 if previous is None else previous.n_iter) + n_epochs,
            loss_curve=[*([] if previous is None else previous.loss_curve),
                        *policy.loss_curve],
        )
        if head is None and previous is not None:
            return replace(previous, **trained)
        supervised = dict(
            input_noise_std=None if scales is None else scales.noise_std,
            task_loss_scale=None if scales is None else scales.loss_scale,
            code_scale=None if scales is None else scales.code_scale,
            optimizer_state=(None if optimizer_state is None
                             else map_tensors(optimizer_state, to_numpy)),
        )
        if head is not None:
            known = None if previous is None else previous.classes
            supervised.update(
                classes=known if classes is None else classes,
                head_coef=to_numpy(head.unscaled_coef(), dtype=dtype),
                head_intercept=to_numpy(head.intercept, dtype=dtype))
        return cls(**trained, **supervised)


def task_phase(fitted, learner, n_classes, *, supervision, learning_rate, device):
    """A joint phase continuing ``fitted``'s head, input noise and Adam (a new
    head when ``fitted`` is None or has none)."""
    scales = None
    if fitted is not None and fitted.supervised:
        # None until measured (a fit interrupted before its joint phase).
        if fitted.task_loss_scale is not None:
            scales = TaskScales(fitted.input_noise_std, fitted.task_loss_scale,
                                fitted.code_scale)
        head = LogisticHead.from_unscaled(
            tensor_copy(fitted.head_coef, device),
            tensor_copy(fitted.head_intercept, device),
            1.0 if scales is None else scales.code_scale)
    else:
        head = LogisticHead.zeros(n_classes, learner.dictionary)
    saved = None if fitted is None else fitted.optimizer_state
    if saved is not None:
        saved = map_tensors(saved, lambda array: torch.from_numpy(array.copy()))
    return TaskDrivenPhase(learner, head, supervision=supervision,
                           learning_rate=learning_rate, scales=scales,
                           optimizer_state=saved)
