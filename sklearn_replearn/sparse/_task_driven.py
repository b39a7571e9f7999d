"""Task-driven dictionary learning (Mairal, Bach & Ponce, 2012).

A dictionary learned jointly with a multinomial logistic head on its lasso
codes: the loss is the lasso objective plus ``supervision_weight`` times the
head's cross-entropy, differentiated through the codes on their active set
(:func:`differentiable_lasso_codes`) and minimised by Adam.

* :class:`LogisticHead`: the head, and its refit by L-BFGS on fixed codes;
* :class:`TaskDrivenPhase`: the joint training of an
  :class:`OnlineDictionaryLearning` state and a head. It owns its Adam
  optimizer, the input noise of its minibatches and, in ``fit``, the moving
  average of its dictionaries;
* :func:`fit_task_driven`: a whole supervised fit, from a label-consistent
  start (Jiang, Lin & Davis, 2013) to the averaged dictionary.

The regularisers' settings below were chosen by nested cross-validation; the
README's DictionaryLearner section gives the measurements, and
``benchmarks/supervised_margin.py --inner`` reruns them.
"""

import torch

from ._coders import lasso_objective
from ._implicit import differentiable_lasso_codes
from ._online import OnlineDictionaryLearning, run_epochs
from ._updates import project_atoms

__all__ = ["LogisticHead", "TaskDrivenPhase", "fit_task_driven", "with_labels"]

# L2 penalty on the head's weights, per sample: a head that cannot grow keeps
# a margin-seeking cross-entropy, so the task gradient still shapes the atoms
# once the training codes are separable.
_HEAD_L2 = 1e-2
# The label-consistent start extends each sample by its one-hot label times
# this fraction of the mean sample norm, so that each atom leans to a class
# whatever the scale of X.
_LABEL_SCALE = 0.5
# Gaussian noise on each minibatch, as a fraction of the data's feature spread
# (root mean square of the features' standard deviations): the atoms must
# separate the classes of nearby inputs too, not just the training samples.
_INPUT_NOISE = 0.3
# Smoothing of the head's cross-entropy targets (the true class gets
# 1 - 0.1 + 0.1 / n_classes): keeps the task gradient shaping the atoms once
# the training codes are separable.
_LABEL_SMOOTHING = 0.1
# Weight on the past of the moving average of fit's joint-phase dictionaries,
# per step: the average of the last few dozen Adam iterates generalises
# better than the last iterate.
_DICTIONARY_AVERAGE = 0.95


class LogisticHead:
    """A multinomial logistic head on codes: ``logits = codes @ coef.T + intercept``.

    Parameters
    ----------
    coef : torch.Tensor of shape (n_classes, k)
    intercept : torch.Tensor of shape (n_classes,)
    """

    def __init__(self, coef, intercept):
        self.coef = coef
        self.intercept = intercept

    @classmethod
    def zeros(cls, n_classes, like):
        """A head of zeros for codes over the dictionary ``like`` (k, p)."""
        return cls(like.new_zeros((n_classes, like.shape[0])),
                   like.new_zeros(n_classes))

    def logits(self, codes):
        return codes @ self.coef.T + self.intercept

    def refit(self, codes, y, max_iter=100):
        """Fit the head to fixed ``codes`` by L-BFGS (penalised logistic
        regression), starting from its current weights."""
        n_samples = codes.shape[0]
        coef = self.coef.detach().clone().requires_grad_(True)
        intercept = self.intercept.detach().clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [coef, intercept], max_iter=max_iter, line_search_fn="strong_wolfe"
        )

        def closure():
            optimizer.zero_grad()
            # Plain cross-entropy: the head is the L2-penalised logistic
            # regression on the codes (smoothed targets here lowered inner-CV
            # accuracy).
            logits = codes @ coef.T + intercept
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            loss = (loss + 0.5 * _HEAD_L2 * n_samples * coef.pow(2).sum()) / n_samples
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        self.coef = coef.detach()
        self.intercept = intercept.detach()
        return self


class TaskDrivenPhase:
    """Joint training of a dictionary and a logistic head.

    Parameters
    ----------
    learner : OnlineDictionaryLearning
        The dictionary (updated in place) and its step counter.
    head : LogisticHead
        The head (its tensors are updated in place by Adam).
    supervision_weight : float
        Weight of the head's cross-entropy.
    learning_rate : float
        Adam's step size.
    noise_std : float or None, default=None
        Standard deviation of the minibatches' input noise. None: measured on
        the first data with at least two rows (see :meth:`run`).
    optimizer_state : dict or None, default=None
        An Adam ``state_dict`` to continue (its learning rate is replaced).
    average : bool, default=False
        Keep a moving average of the dictionaries (see :meth:`averaged`).
    """

    def __init__(self, learner, head, *, supervision_weight, learning_rate,
                 noise_std=None, optimizer_state=None, average=False):
        self.learner = learner
        self.head = head
        self.supervision_weight = supervision_weight
        self.noise_std = noise_std
        self.average = None
        self._averaging = average
        params = [learner.dictionary, head.coef, head.intercept]
        for tensor in params:
            tensor.requires_grad_(True)
        self.optimizer = torch.optim.Adam(params, lr=learning_rate)
        if optimizer_state is not None:
            # Continue Adam (partial_fit); load_state_dict moves the moments
            # to the parameters' device. The learning rate is today's.
            self.optimizer.load_state_dict(optimizer_state)
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
        # The dictionary needs a gradient only inside a step (the coders and
        # the unsupervised updates work on it in place).
        learner.dictionary.requires_grad_(False)

    def run(self, X, y, codes, session, *, n_epochs, batch_size):
        """Up to ``n_epochs`` joint epochs over ``(X, y)`` (see ``run_epochs``)."""
        if self.noise_std is None and X.shape[0] >= 2:
            # Measured on the first supervised data that has a spread, then
            # kept with the model (later partial_fit chunks may be small).
            # Until then (one-row chunks) steps add no noise.
            self.noise_std = _INPUT_NOISE * _feature_spread(X)
        run_epochs(
            X.shape[0], lambda index: self.step(X[index], y[index], codes, index),
            session, n_epochs=n_epochs, batch_size=batch_size, device=X.device,
        )

    def step(self, X, y, codes, index):
        """One task-driven step on a minibatch: codes, head, one Adam step.

        Returns
        -------
        float
            The batch's summed lasso objective (over the noisy samples) plus
            ``supervision_weight`` times its summed (smoothed) cross-entropy.
        """
        learner, head = self.learner, self.head
        D = learner.dictionary
        with torch.no_grad():
            if self.noise_std:
                X = X + self.noise_std * torch.randn_like(X)
            # Warm start from the clean sample's code (in fit, over the
            # dictionary the joint phase started from; zeros in partial_fit),
            # left as it is: the noisy sample's code is a few coder
            # iterations away (7 on average on digits).
            Z = learner.codes(X, codes[index])
        with torch.enable_grad():
            D.requires_grad_(True)
            logits = head.logits(differentiable_lasso_codes(X, D, Z))
            task = _head_loss(logits, y)
            # Envelope theorem: at the lasso solution the objective's gradient
            # in D is its partial derivative with the codes held fixed.
            objective = lasso_objective(X, D, Z, learner.alpha).sum()
            penalty = 0.5 * _HEAD_L2 * X.shape[0] * head.coef.pow(2).sum()
            loss = objective + self.supervision_weight * task
            self.optimizer.zero_grad(set_to_none=True)
            ((loss + penalty) / X.shape[0]).backward()
            self.optimizer.step()
            D.requires_grad_(False)
        with torch.no_grad():
            project_atoms(D, positive=learner.positive_dict)
            if self._averaging:
                if self.average is None:
                    self.average = D.clone()
                else:
                    self.average.lerp_(D, 1.0 - _DICTIONARY_AVERAGE)
        learner.n_steps += 1
        return float(loss.detach())

    def optimizer_state(self):
        """Adam's ``state_dict``, to continue in a later phase."""
        return self.optimizer.state_dict()


def with_labels(X, y, n_classes):
    """X extended by its one-hot labels times ``_LABEL_SCALE`` of the mean
    sample norm (label-consistent dictionary learning: atoms fitted to these
    rows lean to one class, whatever the scale of X)."""
    one_hot = torch.nn.functional.one_hot(y, n_classes).to(X.dtype)
    scale = _LABEL_SCALE * torch.linalg.vector_norm(X, dim=1).mean()
    return torch.cat([X, scale * one_hot], dim=1)


def fit_task_driven(X, y, n_classes, n_components, policy, *, learner_settings,
                    supervision_weight, learning_rate, max_iter, batch_size,
                    chunk_rows):
    """A supervised fit: label-consistent start, then joint training.

    Two sessions of ``policy`` (``TrainingPolicy``) of up to ``max_iter``
    epochs each: unsupervised online learning over the label-extended samples,
    then (unless interrupted) joint training from the head fitted to that
    dictionary's codes. The joint phase returns the moving average of its
    dictionaries, with the head refitted to it.

    Returns
    -------
    learner : OnlineDictionaryLearning
    head : LogisticHead
    noise_std : float or None
        The joint phase's input noise (None when it did not run).
    optimizer_state : dict or None
        Adam's state to continue from; None after averaging (Adam's moments
        belong to the last iterate, so a later partial_fit starts a fresh Adam
        from the average) or when the joint phase did not run.
    """
    X_labelled = with_labels(X, y, n_classes)
    learner = OnlineDictionaryLearning.initial(X_labelled, n_components,
                                               **learner_settings)
    codes = X.new_zeros((X.shape[0], n_components))
    with policy.session(max_iter) as session:
        run_epochs(
            X.shape[0],
            lambda index: learner.step(X_labelled[index], codes, index),
            session, n_epochs=max_iter, batch_size=batch_size, device=X.device,
        )
    learner.drop_features(X.shape[1])
    head = LogisticHead.zeros(n_classes, learner.dictionary)
    if policy.interrupted:
        return learner, head, None, None
    # Start the head at the logistic regression on the codes over that
    # dictionary, then train dictionary and head together.
    codes = learner.all_codes(X, codes, chunk_rows)
    head.refit(codes, y)
    phase = TaskDrivenPhase(learner, head, supervision_weight=supervision_weight,
                            learning_rate=learning_rate, average=True)
    # The joint loss adds the task term: judge divergence from its own start.
    policy.reference_loss = None
    with policy.session(max_iter) as session:
        phase.run(X, y, codes, session, n_epochs=max_iter, batch_size=batch_size)
    if policy.interrupted or phase.average is None:
        # The last iterate and its head, at once.
        return learner, phase.head, phase.noise_std, phase.optimizer_state()
    # Return the averaged dictionary, with the head refitted to its codes so
    # that the head matches the dictionary.
    learner.dictionary = phase.average
    codes = learner.all_codes(X, codes, chunk_rows)
    phase.head.refit(codes, y)
    return learner, phase.head, phase.noise_std, None


def _head_loss(logits, y):
    """Summed cross-entropy of the supervised head, with smoothed targets."""
    return torch.nn.functional.cross_entropy(
        logits, y, reduction="sum", label_smoothing=_LABEL_SMOOTHING)


def _feature_spread(X):
    """Root mean square of the features' standard deviations."""
    return float(X.var(dim=0, correction=0).mean().sqrt())
