"""Online dictionary learning (Mairal et al., 2010): its state and its steps.

:class:`OnlineDictionaryLearning` holds what the algorithm carries from one
minibatch to the next: the dictionary, the sufficient statistics ``A`` and
``B`` and the count of steps taken (which sets the forgetting factor). Its
``step`` codes a minibatch (warm-started), folds the codes into the
statistics and updates the atoms; its ``run`` is the unsupervised epoch loop,
which measures the objective once or a few times per epoch. :func:`run_epochs`
is the epoch loop of supervised fits. Both shuffle, batch, and ask a
training session (``sklearn_replearn._utils.TrainingPolicy``'s, or any object
with the same two methods) whether a loss diverged and when to stop.

Random draws use torch's global generator: run them inside
``torch.manual_seed`` first for repeatable results.
"""

import torch

from .._utils import iter_row_batches
from ..sparse._active_set import active_set_codes, lasso_active_set
from ..sparse._updates import (
    init_dictionary,
    project_atoms,
    update_dictionary,
    update_inner_stats,
)

__all__ = ["OnlineDictionaryLearning", "run_epochs"]

# The lasso coder of ``codes`` (the task-driven phase, the codes its head is
# fitted to): Newton steps on each sample's active set, warm-started from its
# code of the previous epoch (2-5 steps once the dictionary settles), each
# sample stopping when its duality gap is below 0.1% of its objective; the
# few samples whose support changed a lot get a short first-order finish.
_FIT_CODER_MAX_ITER = 60
_FIT_CODER_TOL = 1e-3
# The coder of the online steps: Newton steps only, at most this many from a
# warm start (the previous epoch's code) and from a cold one (zeros: the
# first epoch, partial_fit), supports growing by one atom per step, each
# sample's best code kept. A sample left uncertified (its gap above 1% of its
# objective) goes on from that code in the next epoch. Certifying every code
# with the first-order finish costs several times the time of the epochs for
# objectives barely lower (see the what's-new page). One atom per step: two
# let near-collinear atoms (flat patches of a photo, standardised) enter a
# support together, whose system then sends the Newton steps off. 2 and 4
# steps reached scikit-learn's objectives sooner than 3 and 6 on the quality
# suite.
_STEP_NEWTON_WARM = 2
_STEP_NEWTON_COLD = 4
_STEP_TOL = 1e-2
# Rows of the random subset whose leading singular vectors are the initial
# atoms: enough to find the leading directions, and a bounded cost on large
# data.
_INIT_ROWS = 10_000
# The stopping rule's loss is measured every _CHECK_ROWS training rows at
# most: once per epoch up to that size, a few times per epoch beyond, on
# _PROBE_ROWS fixed rows (``run``), so that a fit on large data can end within
# its first epochs, as online learning there often settles within one.
_CHECK_ROWS = 8192
_PROBE_ROWS = 1024


class OnlineDictionaryLearning:
    """State of online dictionary learning, updated in place by ``step``.

    Parameters
    ----------
    dictionary : torch.Tensor of shape (k, p)
        Atoms, one per row, of norm at most one.
    A : torch.Tensor of shape (k, k)
    B : torch.Tensor of shape (k, p)
        Sufficient statistics (see :func:`update_inner_stats`).
    alpha : float
        L1 penalty of the lasso codes.
    forget_exponent : float, default=1.0
        Exponent on scikit-learn's forgetting factor.
    positive_code, positive_dict : bool, default=False
        Non-negative codes, non-negative atoms.
    n_steps : int, default=0
        Minibatch steps taken so far (a continued fit passes its count).

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.dictionary._online import OnlineDictionaryLearning
    >>> X = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    >>> learner = OnlineDictionaryLearning.initial(X, 5, alpha=0.1)
    >>> codes = X.new_zeros((50, 5))
    >>> loss = learner.step(X[:10], codes, torch.arange(10))
    >>> learner.dictionary.shape, learner.n_steps
    (torch.Size([5, 8]), 1)
    """

    def __init__(self, dictionary, A, B, *, alpha, forget_exponent=1.0,
                 positive_code=False, positive_dict=False, n_steps=0):
        self.dictionary = dictionary
        self.A = A
        self.B = B
        self.alpha = alpha
        self.forget_exponent = forget_exponent
        self.positive_code = positive_code
        self.positive_dict = positive_dict
        self.n_steps = n_steps
        # Set by ``run`` over a partial_fit chunk (see ``step``).
        self._finish_cold = False

    @classmethod
    def initial(cls, X, n_components, **settings):
        """A fresh state: atoms from the SVD of a random subset of ``X``."""
        subset = X[torch.randperm(X.shape[0], device=X.device)[:_INIT_ROWS]]
        D = init_dictionary(subset, n_components,
                            positive=settings.get("positive_dict", False))
        A = X.new_zeros((n_components, n_components))
        B = X.new_zeros((n_components, X.shape[1]))
        return cls(D, A, B, **settings)

    def codes(self, X, init):
        """Lasso codes of ``X`` over the dictionary, warm-started from ``init``."""
        Z, _ = lasso_active_set(
            X, self.dictionary, self.alpha, init=init,
            max_iter=_FIT_CODER_MAX_ITER, tol=_FIT_CODER_TOL,
            positive=self.positive_code,
        )
        return Z

    def all_codes(self, X, init, chunk_rows):
        """Codes of every row of ``X``, ``chunk_rows`` at a time (no gradient)."""
        with torch.no_grad():
            return torch.cat([self.codes(X[rows], init[rows])
                              for rows in iter_row_batches(X.shape[0], chunk_rows)])

    def step(self, X, codes, index):
        """One online step on the minibatch ``X`` (rows ``index`` of the data).

        Codes the batch warm-started from ``codes[index]`` (by a few Newton
        steps, not to full precision: later epochs go on from them; inside a
        :meth:`run` over a ``partial_fit`` chunk, whose rows no later epoch
        revisits, codes from zeros are finished to their certificate) and
        writes the new codes back there (the next epoch's warm starts).

        Returns
        -------
        float
            The batch's summed lasso objective.
        """
        D = self.dictionary
        Z, objective = self._step_codes(X, codes.index_select(0, index),
                                        finish_cold=self._finish_cold)
        batch_loss = float(objective.sum())
        update_inner_stats(self.A, self.B, Z, X, self.n_steps,
                           forget_exponent=self.forget_exponent)
        update_dictionary(D, self.A, self.B, X, Z, positive=self.positive_dict)
        codes[index] = Z
        self.n_steps += 1
        return batch_loss

    def step_codes(self, X, init, *, finish_cold=False):
        """The online step's codes of ``X``: a few Newton steps from ``init``
        (and a first-order finish from zeros with ``finish_cold``)."""
        return self._step_codes(X, init, finish_cold=finish_cold)[0]

    def _step_codes(self, X, init, *, finish_cold=False):
        """:meth:`step_codes`, and each code's lasso objective."""
        if bool(init.any()):
            n_newton = max_iter = _STEP_NEWTON_WARM
        else:
            n_newton = _STEP_NEWTON_COLD
            max_iter = _FIT_CODER_MAX_ITER if finish_cold else n_newton
        Z, _, objective = active_set_codes(
            X, self.dictionary, self.alpha, init=init, max_iter=max_iter,
            tol=_STEP_TOL, positive=self.positive_code, max_newton=n_newton,
            max_new_atoms=1, gram_gaps=True,
        )
        return Z, objective

    @staticmethod
    def checks_per_epoch(n_samples, batch_size):
        """How many times per epoch :meth:`run` measures the objective: once
        per ``_CHECK_ROWS`` (8192) rows begun, at most once per minibatch."""
        n_batches = max(-(-n_samples // batch_size), 1)
        return max(1, min(-(-n_samples // _CHECK_ROWS), n_batches))

    def run(self, X, codes, session, *, n_epochs, batch_size, checks_per_epoch=1,
            whole_data=False):
        """Up to ``n_epochs`` epochs of :meth:`step` over shuffled minibatches.

        ``checks_per_epoch`` times per epoch (after equal shares of its
        minibatches) a loss is reported to ``session.end_epoch``, whose
        stopping rule may end the run. Once per epoch, it is the epoch's mean
        training loss. More often (large data), it is the objective of a fixed
        random subset of ``_PROBE_ROWS`` training rows over the current
        dictionary: a mean over the minibatches since the last check would
        vary with the rows they drew, and the epoch's mean training loss lags
        by up to an epoch the dictionary that, on large data, may have
        settled within one.

        Parameters
        ----------
        X : torch.Tensor of shape (n, p)
            Training data.
        codes : torch.Tensor of shape (n, k)
            Each row's last code (zeros: a cold start), updated in place.
        session : object
            A training session: ``check_batch_loss(loss)`` raises on
            divergence, ``end_epoch(loss)`` records a measured loss and
            returns True to stop (``TrainingPolicy.session()``).
        n_epochs : int
            Most epochs.
        batch_size : int
            Rows per minibatch.
        checks_per_epoch : int, default=1
            Measurements per epoch (:meth:`checks_per_epoch`).
        whole_data : bool, default=False
            ``X`` is all the data the statistics are about: a fit, whose later
            epochs go on from this one's codes, not a ``partial_fit`` chunk,
            whose codes no later epoch revisits (those from zeros are then
            finished to their certificate: without the finish, many small
            ``partial_fit`` calls end well above the fit's reconstruction
            error). When
            ``X`` is a single minibatch of a fit, each step replaces the
            statistics by those of its codes instead of adding them to the
            forgotten past: the past is the same rows, coded over older
            dictionaries, and the atom update minimises the objective itself
            given the codes.

        Returns
        -------
        int
            Epochs begun.
        """
        n_samples = X.shape[0]
        probe = None
        if checks_per_epoch > 1:
            probe = torch.randperm(n_samples, device=X.device)[:_PROBE_ROWS]
        batches = _even_batches(n_samples, batch_size)
        checks = {round((j + 1) * len(batches) / checks_per_epoch) - 1
                  for j in range(checks_per_epoch)}
        refresh = whole_data and len(batches) == 1
        self._finish_cold = not whole_data
        try:
            return self._run_epochs(X, codes, session, n_epochs, batches, checks,
                                    probe, refresh)
        finally:
            self._finish_cold = False

    def _run_epochs(self, X, codes, session, n_epochs, batches, checks, probe,
                    refresh):
        """The loop of :meth:`run`; the epochs begun."""
        n_samples = X.shape[0]
        for epoch in range(n_epochs):
            order = torch.randperm(n_samples, device=X.device)
            total = 0.0
            for number, rows in enumerate(batches):
                index = order[rows]
                if refresh:
                    self.A.zero_()
                    self.B.zero_()
                batch_loss = self.step(X.index_select(0, index), codes, index)
                # Per sample: the same scale for every batch size, so the
                # session's explosion rule compares like with like.
                session.check_batch_loss(batch_loss / index.shape[0])
                total += batch_loss
                if number not in checks:
                    continue
                if probe is None:
                    loss = total / max(n_samples, 1)
                else:
                    loss = self.objective(X[probe], codes, probe)
                if session.end_epoch(loss):
                    return epoch + 1
        return n_epochs

    def objective(self, X, codes, index):
        """Mean lasso objective of ``X`` (rows ``index`` of the data) over the
        dictionary, its codes warm-started from ``codes[index]`` and written
        back."""
        Z, objective = self._step_codes(X, codes[index])
        codes[index] = Z
        return float(objective.mean())

    def drop_features(self, n_features):
        """Keep the first ``n_features`` columns of the atoms (and of ``B``).

        The atoms are rescaled to unit norm: the label-consistent start's
        dictionary over the samples alone.
        """
        atoms = self.dictionary[:, :n_features]
        norms = torch.linalg.vector_norm(atoms, dim=1, keepdim=True)
        # An atom made only of label (none in practice) stays as it is.
        scale = torch.where(norms > 1e-12, norms, torch.ones_like(norms))
        self.dictionary = project_atoms(atoms / scale, positive=self.positive_dict)
        # Atom j shrunk by 1/n_j means codes n_j times larger: the statistics
        # follow, so that a later partial_fit continues consistently.
        self.A = self.A * (scale @ scale.T)
        self.B = self.B[:, :n_features] * scale


def _even_batches(n_samples, batch_size):
    """``ceil(n_samples / batch_size)`` slices covering ``range(n_samples)``,
    their sizes differing by one at most.

    A short last minibatch would weigh as much as a full one in the
    statistics (each step adds its codes' mean): 257 rows in steps of 256
    and 1 end well above the objective of 256 rows; two steps of 128-129
    rows do not.
    """
    n_batches = max(-(-n_samples // max(batch_size, 1)), 1)
    bounds = [round(i * n_samples / n_batches) for i in range(n_batches + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


def run_epochs(n_samples, step, session, *, n_epochs, batch_size, device):
    """Up to ``n_epochs`` passes over shuffled minibatches of ``n_samples`` rows.

    Parameters
    ----------
    n_samples : int
        Rows of the training data.
    step : callable
        ``step(index)`` trains on the rows ``index`` (a tensor) and returns
        their summed loss.
    session : object
        A training session: ``check_batch_loss(loss)`` raises on divergence,
        ``end_epoch(loss)`` records an epoch's loss and returns True to stop
        (``TrainingPolicy.session()``).
    n_epochs : int
        Most epochs.
    batch_size : int
        Rows per minibatch.
    device : torch.device
        Where the shuffled row order is drawn.
    """
    for _ in range(n_epochs):
        order = torch.randperm(n_samples, device=device)
        total = 0.0
        for rows in iter_row_batches(n_samples, batch_size):
            index = order[rows]
            batch_loss = step(index)
            # Per sample: the same scale for every batch size, so the
            # session's explosion rule compares like with like.
            session.check_batch_loss(batch_loss / index.shape[0])
            total += batch_loss
        if session.end_epoch(total / max(n_samples, 1)):
            break
