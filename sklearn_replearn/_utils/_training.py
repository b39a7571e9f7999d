"""One training policy for every training loop of the package.

The autoencoder and VAE nets, the CNN fine-tuning net (both skorch) and the
dictionary learner's own loop all ask a :class:`TrainingPolicy` the same
questions, so they stop, show progress, detect divergence and handle Ctrl-C
the same way:

* **stop**: after ``max_iter`` epochs, or when the monitored loss (training
  loss, or validation loss with early stopping) has not improved on its best
  by a relative ``tol`` for ``n_iter_no_change`` epochs (scikit-learn's MLP
  rule, with ``tol`` relative to the loss's magnitude so that it also works
  for negative losses such as a Gaussian VAE's negative ELBO);
* **progress**: ``verbose=1`` a progress bar over epochs on stderr,
  ``verbose>=2`` one table row per epoch on stdout;
* **divergence**: a batch loss that is NaN/inf, or that has grown past
  ``explosion_factor`` times the magnitude of the session's first batch loss,
  raises :class:`~sklearn_replearn.exceptions.TrainingDivergedError` naming
  what to change;
* **Ctrl-C**: ``KeyboardInterrupt`` ends the session with the epochs completed
  so far (a warning says so); the model stays usable.

The policy is plain Python (no torch, no skorch): the skorch adapter lives in
``_engine`` and the dictionary learner's loop calls the policy directly.
"""

import math
import sys
import time
import warnings

from ..exceptions import TrainingDivergedError

__all__ = ["TrainingPolicy"]

# A batch loss this many times the first batch loss's magnitude (plus the
# first loss itself) means training has diverged. Healthy training from a
# random start only lowers the loss, and noisy minibatches stay within a
# small factor of it; a learning rate too high for the problem drives the loss
# up by many orders of magnitude within an epoch or two (an autoencoder at
# learning_rate=1e3 reaches ~1e33 on digits).
EXPLOSION_FACTOR = 1e4


class TrainingPolicy:
    """Decide when a training loop stops, what it shows, and when it failed.

    Parameters
    ----------
    owner : str
        Who trains, for messages and the progress bar (e.g. the class name).
    max_iter : int
        Most epochs of a session (``fit``); ``partial_fit`` runs sessions of
        one epoch.
    tol : float or None, default=None
        Relative improvement of the monitored loss on its best that resets
        the patience counter. None: never stop before ``max_iter``.
    n_iter_no_change : int, default=10
        Epochs without such an improvement before stopping.
    warmup_epochs : int, default=0
        The first epochs of a session that neither count as misses nor provide
        the best loss (a loss weight is being annealed then).
    verbose : int, default=0
        0 silent, 1 a progress bar over epochs, 2 a line per epoch.
    divergence_hint : str, default=""
        What the user can change when the loss diverges, as the start of a
        sentence, e.g. ``"Lower learning_rate (it is 0.1)"``.
    explosion_factor : float, default=EXPLOSION_FACTOR
        A batch loss above ``first + explosion_factor * |first|`` is
        divergence, ``first`` being the first batch loss this policy saw (in
        any session: ``partial_fit`` calls are sessions of one epoch each) or
        ``reference_loss``.
    reference_loss : float, default=None
        The loss training started from, when the policy is rebuilt for a
        model trained before (e.g. its first epoch's loss after loading).
    checks_per_epoch : int, default=1
        Losses reported per pass over the data. The rule (``max_iter``,
        ``n_iter_no_change``, the sessions' lengths) counts reports; what
        ``verbose`` shows and the interruption warning count passes, a report
        being ``1 / checks_per_epoch`` of one.

    Examples
    --------
    >>> policy = TrainingPolicy(owner="demo", max_iter=100, tol=0.01,
    ...                         n_iter_no_change=2)
    >>> with policy.session() as session:
    ...     for loss in [1.0, 0.5, 0.499, 0.498, 0.3]:
    ...         session.check_batch_loss(loss)
    ...         if session.end_epoch(loss):
    ...             break
    >>> policy.loss_curve, policy.converged
    ([1.0, 0.5, 0.499, 0.498], True)
    """

    def __init__(self, *, owner, max_iter, tol=None, n_iter_no_change=10,
                 warmup_epochs=0, verbose=0, divergence_hint="",
                 explosion_factor=EXPLOSION_FACTOR, reference_loss=None,
                 checks_per_epoch=1):
        self.owner = owner
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.warmup_epochs = warmup_epochs
        self.verbose = verbose
        self.divergence_hint = divergence_hint
        self.explosion_factor = explosion_factor
        self.reference_loss = reference_loss
        self.checks_per_epoch = checks_per_epoch
        # Completed epochs, over all sessions of this policy.
        self.loss_curve = []
        self.valid_curve = []
        self.converged = False
        self.interrupted = False

    # ------------------------------------------------------------ sessions
    def session(self, n_epochs=None):
        """A context for one run of up to ``n_epochs`` (default ``max_iter``).

        Resets the stopping rule and the divergence reference; swallows a
        ``KeyboardInterrupt`` raised inside (``interrupted`` is then True and
        a warning says how many epochs were completed).
        """
        return _Session(self, self.max_iter if n_epochs is None else n_epochs)

    @property
    def n_epochs(self):
        """Completed epochs over all sessions."""
        return len(self.loss_curve)

    # ------------------------------------------------------------- helpers
    def _diverged(self, loss, where):
        epoch = self.n_epochs + 1
        hint = self.divergence_hint or "Lower learning_rate"
        return TrainingDivergedError(
            f"{self.owner}: the {where} loss {loss} in epoch {epoch}; training "
            f"was stopped. {hint}, or scale the input to a moderate range (e.g. "
            "StandardScaler or MinMaxScaler)."
        )


class _Session:
    """One run of a :class:`TrainingPolicy` (see ``TrainingPolicy.session``)."""

    def __init__(self, policy, n_epochs):
        self.policy = policy
        self.n_epochs = n_epochs
        self.best = None
        self.misses = 0
        self.improved = False
        self.epochs_run = 0
        self._bar = None
        self._header_printed = False
        self._epoch_start = None

    def __enter__(self):
        policy = self.policy
        policy.converged = False
        policy.interrupted = False
        if policy.verbose == 1:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.n_epochs / policy.checks_per_epoch,
                             desc=policy.owner, unit="epoch", file=sys.stderr,
                             leave=False)
        self._epoch_start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, traceback):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.interrupt()
            return True
        return False

    def interrupt(self):
        """Record a Ctrl-C: the epochs completed so far are the result."""
        policy = self.policy
        policy.interrupted = True
        warnings.warn(
            f"{policy.owner} was interrupted after "
            f"{policy.n_epochs / policy.checks_per_epoch:g} completed "
            "epoch(s); the model trained so far is kept.",
            UserWarning,
            stacklevel=3,
        )

    # -------------------------------------------------------------- batches
    def check_batch_loss(self, loss, *, where="training"):
        """Raise ``TrainingDivergedError`` if ``loss`` is NaN/inf or exploded."""
        loss = float(loss)
        policy = self.policy
        if not math.isfinite(loss):
            raise policy._diverged(f"became {loss}", where)
        if where != "training":
            return
        # The reference is kept over sessions: a run of one-epoch partial_fit
        # calls must not move it up with a diverging loss.
        first = policy.reference_loss
        if first is None or not math.isfinite(first):
            policy.reference_loss = loss
        elif loss > first + policy.explosion_factor * max(abs(first), 1e-12):
            raise policy._diverged(
                f"exploded to {loss:.4g} from {first:.4g} at the start", where,
            )

    # --------------------------------------------------------------- epochs
    def end_epoch(self, train_loss, valid_loss=None):
        """Record a completed epoch; return True when training should stop.

        With ``valid_loss`` given the stopping rule monitors it (early
        stopping), else the training loss. ``improved`` tells whether this
        epoch is the best so far (whose weights early stopping restores).
        """
        policy = self.policy
        train_loss = float(train_loss)
        self.check_batch_loss(train_loss)
        policy.loss_curve.append(train_loss)
        if valid_loss is not None:
            valid_loss = float(valid_loss)
            self.check_batch_loss(valid_loss, where="validation")
            policy.valid_curve.append(valid_loss)
        self.epochs_run += 1
        self._show(train_loss, valid_loss)
        monitored = train_loss if valid_loss is None else valid_loss
        self.improved = False
        stop = False
        if self.epochs_run > policy.warmup_epochs:
            # scikit-learn's MLP rule: a miss unless the loss beats the best
            # so far by tol (relative); the best is the lowest loss seen.
            if self.best is not None and monitored >= self.best - self._threshold():
                self.misses += 1
            else:
                self.misses = 0
            if self.best is None or monitored < self.best:
                self.best = monitored
                self.improved = True
            rule_on = policy.tol is not None or valid_loss is not None
            if rule_on and self.misses >= policy.n_iter_no_change:
                policy.converged = True
                stop = True
        return stop or self.epochs_run >= self.n_epochs

    def _threshold(self):
        tol = self.policy.tol or 0.0
        return tol * abs(self.best)

    def _show(self, train_loss, valid_loss):
        now = time.perf_counter()
        duration, self._epoch_start = now - self._epoch_start, now
        policy = self.policy
        if self._bar is not None:
            postfix = {"train_loss": f"{train_loss:.4g}"}
            if valid_loss is not None:
                postfix["valid_loss"] = f"{valid_loss:.4g}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1 / policy.checks_per_epoch)
        elif policy.verbose >= 2:
            columns = ["epoch", "train_loss"]
            epoch = (f"{policy.n_epochs:>7d}" if policy.checks_per_epoch == 1 else
                     f"{policy.n_epochs / policy.checks_per_epoch:>7.2f}")
            values = [epoch, f"{train_loss:>12.4f}"]
            if valid_loss is not None:
                columns.append("valid_loss")
                values.append(f"{valid_loss:>12.4f}")
            columns.append("dur")
            values.append(f"{duration:>8.4f}")
            if not self._header_printed:
                header = "  ".join(f"{name:>{len(value)}}"
                                   for name, value in zip(columns, values))
                print(header)
                print("  ".join("-" * len(value) for value in values))
                self._header_printed = True
            print("  ".join(values), flush=True)
