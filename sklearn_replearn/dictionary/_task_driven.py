"""Task-driven dictionary learning (Mairal, Bach & Ponce, 2012).

A dictionary learned jointly with a multinomial logistic head on its lasso
codes: the loss is the lasso objective plus a weight times the head's
cross-entropy, differentiated through the codes on their active set
(:func:`differentiable_lasso_codes`) and minimised by Adam.

* :class:`Supervision`: the user's settings (``DictionaryLearner``'s
  supervised parameters), all relative to the data's own scale;
* :class:`TaskScales`: that scale, measured once on the first supervised data
  and kept with the model, so that the same settings mean the same thing on
  data in [0, 1], standardised data or pixel values in [0, 255];
* :class:`LogisticHead`: the head, and its refit by L-BFGS on fixed codes;
* :class:`TaskDrivenPhase`: the joint training of an
  :class:`OnlineDictionaryLearning` state and a head. It owns its Adam
  optimizer, the input noise of its minibatches and, in ``fit``, the moving
  average of its dictionaries;
* :func:`fit_task_driven`: a whole supervised fit, from a label-consistent
  start (Jiang, Lin & Davis, 2013) to the averaged dictionary.

The default settings were chosen by nested cross-validation over the labelled
data sets of ``benchmarks/bench_quality.py`` (digits, textures, faces);
``benchmarks/supervised_margin.py --inner`` reruns that selection.
"""

import math
from dataclasses import dataclass

import torch

from ..sparse._coders import lasso_objective
from ..sparse._implicit import differentiable_lasso_codes
from ..sparse._updates import project_atoms
from ._online import OnlineDictionaryLearning, run_epochs

__all__ = ["LogisticHead", "Supervision", "TaskDrivenPhase", "TaskScales",
           "fit_task_driven", "with_labels"]


@dataclass(frozen=True)
class Supervision:
    """Settings of a supervised fit, each relative to the data's scale.

    Parameters
    ----------
    weight : float
        Weight of the head's cross-entropy, in units of the reconstruction
        scale: the joint loss is the lasso objective plus ``weight`` times
        ``TaskScales.loss_scale`` times the cross-entropy, so that at
        ``weight=1`` a head at chance (cross-entropy ``log(n_classes)``)
        costs as much as the mean lasso objective at the start.
    input_noise : float, default=0.3
        Gaussian noise on each joint minibatch, as a fraction of the data's
        feature spread (root mean square of the features' standard
        deviations): the atoms must separate the classes of nearby inputs
        too, not only the training samples.
    label_smoothing : float, default=0.1
        Smoothing of the joint phase's cross-entropy targets (the true class
        gets ``1 - s + s / n_classes``): keeps the task gradient shaping the
        atoms once the training codes are separable.
    head_l2 : float, default=1e-2
        L2 penalty per sample on the head's weights over codes divided by
        their root-mean-square norm (``TaskScales.code_scale``).
    label_scale : float, default=0.5
        The label-consistent start extends each sample by its one-hot label
        times this fraction of the mean sample norm, so that each atom leans
        to a class whatever the scale of X.
    averaging : float, default=0.95
        Weight on the past of the moving average of ``fit``'s joint-phase
        dictionaries, per step (0: the last iterate).
    validation_fraction : float, default=0.0
        Fraction of each class's rows that ``fit`` holds out of training to
        check that the joint phase helped: when a head on the joint phase's
        codes predicts the held-out labels no better (cross-entropy) than a
        head on the codes of the unsupervised dictionary of all the rows
        (fitted first, labels unused), ``fit`` returns that dictionary.
        0 trains on every row and keeps the joint phase.
    """

    weight: float
    input_noise: float = 0.3
    label_smoothing: float = 0.1
    head_l2: float = 1e-2
    label_scale: float = 0.5
    averaging: float = 0.95
    validation_fraction: float = 0.0

    def task_weight(self, scales):
        """The cross-entropy's weight in the joint loss."""
        return self.weight * scales.loss_scale


@dataclass
class TaskScales:
    """The data's scale as the supervised loss sees it, measured once.

    Parameters
    ----------
    noise_std : float or None
        Standard deviation of the input noise (None until data with two rows
        or more has been seen: until then steps add no noise).
    loss_scale : float, default=1.0
        Mean lasso objective per sample over ``log(n_classes)``, at the
        dictionary the supervised training started from.
    code_scale : float, default=1.0
        Root mean square of the codes' norms there; the head sees the codes
        divided by it.
    """

    noise_std: float | None = None
    loss_scale: float = 1.0
    code_scale: float = 1.0

    @classmethod
    def measure(cls, X, codes, dictionary, alpha, n_classes, input_noise):
        """The scales of ``X`` and its ``codes`` over ``dictionary``."""
        objective = float(lasso_objective(X, dictionary, codes, alpha).mean())
        norm = float(codes.pow(2).sum(dim=1).mean().sqrt())
        # Degenerate data (all-zero rows, all-zero codes) keeps unit scales.
        loss_scale = objective / math.log(n_classes) if objective > 0 else 1.0
        return cls(
            noise_std=(input_noise * _feature_spread(X) if X.shape[0] >= 2
                       else None),
            loss_scale=loss_scale,
            code_scale=norm if norm > 0 else 1.0,
        )


class LogisticHead:
    """A multinomial logistic head on codes:
    ``logits = codes @ coef.T / code_scale + intercept``.

    Parameters
    ----------
    coef : torch.Tensor of shape (n_classes, k)
        Weights over the scaled codes.
    intercept : torch.Tensor of shape (n_classes,)
    code_scale : float, default=1.0
        The codes are divided by it (``TaskScales.code_scale``).
    """

    def __init__(self, coef, intercept, code_scale=1.0):
        self.coef = coef
        self.intercept = intercept
        self.code_scale = code_scale

    @classmethod
    def zeros(cls, n_classes, like, code_scale=1.0):
        """A head of zeros for codes over the dictionary ``like`` (k, p)."""
        return cls(like.new_zeros((n_classes, like.shape[0])),
                   like.new_zeros(n_classes), code_scale)

    @classmethod
    def from_unscaled(cls, coef, intercept, code_scale=1.0):
        """The head whose logits are ``codes @ coef.T + intercept``."""
        return cls(coef * code_scale, intercept, code_scale)

    def unscaled_coef(self):
        """Weights over the codes themselves (``head_coef_``)."""
        return self.coef / self.code_scale

    def logits(self, codes):
        return (codes / self.code_scale) @ self.coef.T + self.intercept

    def refit(self, codes, y, l2, max_iter=100):
        """Fit the head to fixed ``codes`` by L-BFGS (logistic regression with
        an L2 penalty ``l2`` per sample), starting from its current weights."""
        n_samples = codes.shape[0]
        scaled = codes / self.code_scale
        coef = self.coef.detach().clone().requires_grad_(True)
        intercept = self.intercept.detach().clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [coef, intercept], max_iter=max_iter, line_search_fn="strong_wolfe"
        )

        def closure():
            optimizer.zero_grad()
            # Plain cross-entropy: the head is the L2-penalised logistic
            # regression on the codes (smoothed targets here lowered inner-CV
            # accuracy on digits).
            logits = scaled @ coef.T + intercept
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            loss = (loss + 0.5 * l2 * n_samples * coef.pow(2).sum()) / n_samples
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
    supervision : Supervision
        The settings.
    learning_rate : float
        Adam's step size.
    scales : TaskScales or None, default=None
        The data's scales. None: measured on the first data that
        :meth:`run` gets (see :class:`TaskScales`).
    optimizer_state : dict or None, default=None
        An Adam ``state_dict`` to continue (its learning rate is replaced).
    average : bool, default=False
        Keep a moving average of the dictionaries (see ``average``).
    """

    def __init__(self, learner, head, *, supervision, learning_rate,
                 scales=None, optimizer_state=None, average=False):
        self.learner = learner
        self.head = head
        self.supervision = supervision
        self.scales = scales
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
        self._measure(X)
        run_epochs(
            X.shape[0], lambda index: self.step(X[index], y[index], codes, index),
            session, n_epochs=n_epochs, batch_size=batch_size, device=X.device,
        )

    def _measure(self, X):
        """Measure the scales on the first supervised data (partial_fit), and
        the input noise on the first data that has a spread."""
        if self.scales is None:
            with torch.no_grad():
                codes = self.learner.codes(
                    X, X.new_zeros((X.shape[0], self.learner.dictionary.shape[0])))
            self.scales = TaskScales.measure(
                X, codes, self.learner.dictionary, self.learner.alpha,
                self.head.coef.shape[0], self.supervision.input_noise)
            # The head's logits stay the same over the newly scaled codes (in
            # place: Adam holds the tensor).
            with torch.no_grad():
                self.head.coef.mul_(self.scales.code_scale / self.head.code_scale)
            self.head.code_scale = self.scales.code_scale
        elif self.scales.noise_std is None and X.shape[0] >= 2:
            # Later partial_fit chunks may be small: the first with a spread
            # sets the noise, kept with the model.
            self.scales.noise_std = (self.supervision.input_noise
                                     * _feature_spread(X))

    def step(self, X, y, codes, index):
        """One task-driven step on a minibatch: codes, head, one Adam step.

        Returns
        -------
        float
            The batch's summed lasso objective (over the noisy samples) plus
            the task weight times its summed (smoothed) cross-entropy.
        """
        learner, head, settings = self.learner, self.head, self.supervision
        if self.scales is None:
            self._measure(X)
        D = learner.dictionary
        noise_std = self.scales.noise_std
        with torch.no_grad():
            if noise_std:
                X = X + noise_std * torch.randn_like(X)
            # Warm start from the clean sample's code (in fit, over the
            # dictionary the joint phase started from; zeros in partial_fit),
            # left as it is: the noisy sample's code is a few coder
            # iterations away (7 on average on digits).
            Z = learner.codes(X, codes[index])
        with torch.enable_grad():
            D.requires_grad_(True)
            logits = head.logits(differentiable_lasso_codes(X, D, Z))
            task = _head_loss(logits, y, settings.label_smoothing)
            # Envelope theorem: at the lasso solution the objective's gradient
            # in D is its partial derivative with the codes held fixed.
            objective = lasso_objective(X, D, Z, learner.alpha).sum()
            penalty = 0.5 * settings.head_l2 * X.shape[0] * head.coef.pow(2).sum()
            loss = objective + settings.task_weight(self.scales) * task
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
                    self.average.lerp_(D, 1.0 - settings.averaging)
        learner.n_steps += 1
        return float(loss.detach())

    def optimizer_state(self):
        """Adam's ``state_dict``, to continue in a later phase."""
        return self.optimizer.state_dict()


def with_labels(X, y, n_classes, label_scale):
    """X extended by its one-hot labels times ``label_scale`` of the mean
    sample norm (label-consistent dictionary learning: atoms fitted to these
    rows lean to one class, whatever the scale of X)."""
    one_hot = torch.nn.functional.one_hot(y, n_classes).to(X.dtype)
    scale = label_scale * torch.linalg.vector_norm(X, dim=1).mean()
    return torch.cat([X, scale * one_hot], dim=1)


def fit_task_driven(X, y, n_classes, n_components, policy, *, learner_settings,
                    supervision, learning_rate, max_iter, batch_size,
                    chunk_rows):
    """A supervised fit: label-consistent start, then joint training.

    Two sessions of ``policy`` (``TrainingPolicy``): up to ``max_iter`` epochs
    of unsupervised online learning over the label-extended samples (stopped
    by the policy's rule), then (unless interrupted) ``max_iter`` joint epochs
    from the head fitted to that dictionary's codes. The joint phase ignores
    the policy's ``tol``: its loss is measured on noisy samples, whose noise
    energy dwarfs the epoch-to-epoch gains, so a relative rule stopped it at
    points that varied with the seed (supervised fits of 14-22 epochs in all
    on the textures of ``bench_quality.py``), before its moving average was
    done. It returns that average, with the
    head refitted to it; the policy's ``converged`` stays the first phase's.

    Returns
    -------
    learner : OnlineDictionaryLearning
    head : LogisticHead
    scales : TaskScales or None
        The data's scales (None when the joint phase did not run).
    optimizer_state : dict or None
        Adam's state to continue from; None after averaging (Adam's moments
        belong to the last iterate, so a later partial_fit starts a fresh Adam
        from the average) or when the joint phase did not run.
    """
    X_all, y_all = X, y
    fallback = split = None
    if supervision.validation_fraction:
        # The unsupervised dictionary of the same rows (labels unused; the
        # same random draws as an unsupervised fit, so the same dictionary),
        # to fall back on.
        fallback = OnlineDictionaryLearning.initial(X, n_components,
                                                    **learner_settings)
        codes = X.new_zeros((X.shape[0], n_components))
        with policy.session(max_iter) as session:
            fallback.run(X, codes, session, n_epochs=max_iter,
                         batch_size=batch_size, whole_data=True)
        if policy.interrupted:
            return (fallback, LogisticHead.zeros(n_classes, fallback.dictionary),
                    None, None)
        split = _validation_split(y, n_classes, supervision.validation_fraction)
    if split is not None:
        X, y = X_all[split[0]], y_all[split[0]]
    X_labelled = with_labels(X, y, n_classes, supervision.label_scale)
    learner = OnlineDictionaryLearning.initial(X_labelled, n_components,
                                               **learner_settings)
    codes = X.new_zeros((X.shape[0], n_components))
    with policy.session(max_iter) as session:
        # The unsupervised fit's loop (whole_data: data in one minibatch
        # refresh the statistics), on the samples extended by their labels.
        learner.run(X_labelled, codes, session, n_epochs=max_iter,
                    batch_size=batch_size, whole_data=True)
    learner.drop_features(X.shape[1])
    if policy.interrupted:
        return learner, LogisticHead.zeros(n_classes, learner.dictionary), None, None
    converged = policy.converged
    # Start the head at the logistic regression on the codes over that
    # dictionary, then train dictionary and head together.
    codes = learner.all_codes(X, codes, chunk_rows)
    # The scales of all the data given, held-out rows included.
    scales = TaskScales.measure(
        X_all, codes if split is None else learner.all_codes(
            X_all, X_all.new_zeros((X_all.shape[0], n_components)), chunk_rows),
        learner.dictionary, learner.alpha, n_classes, supervision.input_noise)
    head = LogisticHead.zeros(n_classes, learner.dictionary, scales.code_scale)
    head.refit(codes, y, supervision.head_l2)
    phase = TaskDrivenPhase(learner, head, supervision=supervision,
                            learning_rate=learning_rate, scales=scales,
                            average=True)
    # The joint loss adds the task term: judge divergence from its own start.
    policy.reference_loss = None
    tol, policy.tol = policy.tol, None
    try:
        with policy.session(max_iter) as session:
            phase.run(X, y, codes, session, n_epochs=max_iter,
                      batch_size=batch_size)
    finally:
        policy.tol = tol
    if policy.interrupted or phase.average is None:
        # The last iterate and its head, at once.
        return learner, phase.head, phase.scales, phase.optimizer_state()
    policy.converged = converged
    # Return the averaged dictionary, with the head refitted to its codes so
    # that the head matches the dictionary.
    learner.dictionary = phase.average
    if split is not None:
        held_out = (X_all[split[1]], y_all[split[1]])
        losses = [_held_out_loss(learner, D, (X, y), held_out, n_classes,
                                 scales, supervision.head_l2, chunk_rows)
                  for D in (fallback.dictionary, phase.average)]
        if losses[0] <= losses[1]:
            learner = fallback
        X, y = X_all, y_all
        codes = X.new_zeros((X.shape[0], n_components))
    codes = learner.all_codes(X, codes, chunk_rows)
    phase.head.refit(codes, y, supervision.head_l2)
    return learner, phase.head, phase.scales, None


def _validation_split(y, n_classes, fraction):
    """(training rows, held-out rows): ``fraction`` of each class's rows,
    at least one of every class with two rows or more; None when ``fraction``
    is 0 or no row is held out."""
    if not fraction:
        return None
    order = torch.randperm(y.shape[0], device=y.device)
    train, held = [], []
    for label in range(n_classes):
        rows = order[y[order] == label]
        n_held = 0
        if rows.shape[0] >= 2:
            n_held = min(max(round(fraction * rows.shape[0]), 1), rows.shape[0] - 1)
        held.append(rows[:n_held])
        train.append(rows[n_held:])
    held = torch.cat(held)
    if held.shape[0] == 0:
        return None
    return torch.cat(train).sort().values, held.sort().values


def _held_out_loss(learner, dictionary, train, held_out, n_classes, scales, l2,
                   chunk_rows):
    """Cross-entropy on ``held_out`` of a head fitted to ``train``'s codes
    over ``dictionary``."""
    (X, y), (X_held, y_held) = train, held_out
    k = dictionary.shape[0]
    current, learner.dictionary = learner.dictionary, dictionary
    try:
        codes = learner.all_codes(X, X.new_zeros((X.shape[0], k)), chunk_rows)
        codes_held = learner.all_codes(
            X_held, X.new_zeros((X_held.shape[0], k)), chunk_rows)
    finally:
        learner.dictionary = current
    head = LogisticHead.zeros(n_classes, dictionary, scales.code_scale)
    head.refit(codes, y, l2)
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(head.logits(codes_held),
                                                       y_held))


def _head_loss(logits, y, label_smoothing):
    """Summed cross-entropy of the supervised head, with smoothed targets."""
    return torch.nn.functional.cross_entropy(
        logits, y, reduction="sum", label_smoothing=label_smoothing)


def _feature_spread(X):
    """Root mean square of the features' standard deviations."""
    return float(X.var(dim=0, correction=0).mean().sqrt())
