"""Training skeleton shared by the neural estimators (autoencoder, VAE).

A subclass says how to build its torch module (``_build_module``) and its
criterion (``_make_criterion``); this class does validation, seeding, the
optional validation split, building and running the skorch net (``net_``),
the fitted attributes and batched inference.
"""

import math
import warnings
from copy import deepcopy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._engine import OPTIMIZERS, RowDataset, make_net
from .base import BaseRepresentation
from .utils import seeded

__all__ = ["BaseNeuralTransformer"]


class BaseNeuralTransformer(BaseRepresentation):
    """Fit/partial_fit/transform machinery for skorch-trained torch modules.

    Subclasses implement:

    * ``_build_module(n_features)`` -> a ``torch.nn.Module`` with ``encode``,
      ``decode`` and ``reconstruct`` methods, and ``forward`` giving what the
      loss takes (the module may define ``loss(output, X)``);
    * ``_make_criterion()`` -> a torch loss class or instance, or None when the
      module defines ``loss``;
    * optionally ``_check_training_values(X)`` for data-dependent checks.
    """

    _accepts_sparse = True

    _parameter_constraints: dict = {
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(set(OPTIMIZERS)), type],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "callbacks": [list, None],
        "device": [str, torch.device],
        "accelerator": [HasMethods(["prepare", "unwrap_model", "autocast"]), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ----------------------------------------------------------------- hooks
    def _build_module(self, n_features):  # pragma: no cover - abstract
        raise NotImplementedError

    def _make_criterion(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_training_values(self, X):
        """Data-dependent checks on validated training data (none by default)."""

    def _training_schedule(self):
        """Callbacks the model itself needs, and the epochs of warm-up.

        Returns ``(callbacks, warmup_epochs)``; during the warm-up epochs
        neither early stopping nor the ``tol`` plateau rule applies (the VAE
        anneals its KL weight then). Plain models have none.
        """
        return [], 0

    # --------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the network on X for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Sparse rows are densified one batch at a time.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = self._validate_X(X, reset=True)
        self._check_training_values(X)
        device = self._resolve_device()
        with seeded(self.random_state, device) as seed:
            train_X, valid_X = self._split_validation(X, seed)
            module = self._checked_module(X.shape[1], device)
            net = self._make_net(module, device, valid_X=valid_X)
            self._train(net, train_X, device, epochs=None)
        self._record_history(warn_if_not_converged=True)
        return self

    def partial_fit(self, X, y=None):
        """Train for one epoch on X, continuing from the current weights.

        The first call builds the network; later calls must pass data with the
        same number of features. Early stopping does not apply.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        first_call = not hasattr(self, "net_")
        if first_call:
            self._validate_params()
        X = self._validate_X(X, reset=first_call)
        self._check_training_values(X)
        device = torch.device(self.net_.device) if not first_call else (
            self._resolve_device())
        with seeded(self.random_state, device, offset=getattr(self, "n_iter_", 0)):
            if first_call:
                module = self._checked_module(X.shape[1], device)
                net = self._make_net(module, device, valid_X=None, for_partial_fit=True)
            else:
                net = self.net_
            self._train(net, X, device, epochs=1)
        self._record_history(warn_if_not_converged=False)
        return self

    def _split_validation(self, X, seed):
        """Hold out ``validation_fraction`` of X, only when early stopping."""
        if not self.early_stopping:
            return X, None
        n_samples = X.shape[0]
        n_valid = math.ceil(self.validation_fraction * n_samples)
        if n_samples - n_valid < 1:
            raise ValueError(
                f"early_stopping=True holds out validation_fraction="
                f"{self.validation_fraction} of {n_samples} samples, leaving none to "
                "train on; pass more samples or set early_stopping=False."
            )
        order = np.random.RandomState(seed).permutation(n_samples)
        return X[order[n_valid:]], X[order[:n_valid]]

    def _checked_module(self, n_features, device):
        """Build the module and check that it maps X to codes and back."""
        module = self._build_module(n_features)
        with torch.no_grad():
            probe = torch.zeros(2, n_features)
            was_training = module.training
            module.eval()
            code = module.encode(probe)
            if code.ndim != 2 or code.shape[0] != 2:
                raise ValueError(
                    "The encoder must map a batch of shape (batch, n_features) to "
                    f"codes of shape (batch, n_components); a batch of shape "
                    f"{tuple(probe.shape)} gave {tuple(code.shape)}."
                )
            reconstruction = module.decode(code)
            if tuple(reconstruction.shape) != (2, n_features):
                raise ValueError(
                    "The decoder must map codes back to (batch, n_features) = "
                    f"(2, {n_features}); it gave {tuple(reconstruction.shape)}. "
                    "Check that the decoder's output width matches X."
                )
            module.train(was_training)
        self._n_components_out = int(code.shape[1])
        return module.to(device)

    def _resolve_device(self):
        if self.accelerator is None:
            return super()._resolve_device()
        from ._accelerate import accelerator_device

        return accelerator_device(self.accelerator, self.device)

    def _make_net(self, module, device, *, valid_X, for_partial_fit=False):
        early_stopping = self.early_stopping and not for_partial_fit
        schedule, warmup_epochs = self._training_schedule()
        net = make_net(
            module,
            criterion=self._make_criterion(),
            max_iter=self.max_iter,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            device=str(device),
            early_stopping=early_stopping,
            valid_dataset=RowDataset(valid_X, device) if early_stopping else None,
            n_iter_no_change=self.n_iter_no_change,
            tol=None if for_partial_fit else self.tol,
            verbose=0 if for_partial_fit else self.verbose,
            # Copies, so that fitting never changes the user's callback objects.
            callbacks=[*schedule, *deepcopy(self.callbacks or [])],
            warmup_epochs=warmup_epochs,
        )
        if self.accelerator is not None:
            from ._accelerate import accelerate_net

            net = accelerate_net(net, self.accelerator)
        return net

    def _train(self, net, X, device, epochs):
        """Run the net; if training fails, leave no fitted state at all.

        (``fit`` has already recorded ``n_features_in_`` for the new data, so an
        old ``net_`` kept beside it would be silently inconsistent.)
        """
        try:
            if epochs is None:
                net.fit(RowDataset(X, device))
                _drop_fit_only_state(net)
            else:
                if not net.initialized_:
                    net.initialize()
                net.partial_fit(RowDataset(X, device), epochs=epochs)
        except Exception:
            self._forget_fitted_state()
            raise
        self.net_ = net

    def _forget_fitted_state(self):
        for name in [name for name in vars(self)
                     if name.endswith("_") and not name.startswith("__")]:
            delattr(self, name)
        self.__dict__.pop("_n_components_out", None)

    def _record_history(self, warn_if_not_converged):
        history = self.net_.history
        self.loss_curve_ = [float(loss) for loss in history[:, "train_loss"]]
        # Completed epochs (an epoch interrupted by Ctrl-C has no loss).
        self.n_iter_ = len(self.loss_curve_)
        if self.early_stopping and "valid_loss" in history[-1]:
            self.validation_scores_ = [
                -float(loss) for loss in history[:, "valid_loss"]
            ]
            self.best_validation_score_ = max(self.validation_scores_)
        elif not self.early_stopping:
            # Left over from an earlier fit with early stopping.
            self.__dict__.pop("validation_scores_", None)
            self.__dict__.pop("best_validation_score_", None)
        if warn_if_not_converged and self.n_iter_ >= self.max_iter and (
            self.tol is not None or self.early_stopping
        ):
            warnings.warn(
                f"{type(self).__name__} stopped at max_iter={self.max_iter} epochs "
                "while the loss was still improving; increase max_iter for a "
                "better fit.",
                ConvergenceWarning,
            )

    # ------------------------------------------------------------- inference
    @property
    def module_(self):
        """The fitted torch module (on CPU after unpickling without a GPU)."""
        check_is_fitted(self)
        return self.net_.module_

    @property
    def _n_features_out(self):
        return self._n_components_out

    def _inference_module(self):
        check_is_fitted(self)
        module = self.net_.module_
        module.eval()
        return module, torch.device(self.net_.device)

    def transform(self, X):
        """Encode X: one code vector per sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to encode.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            The codes, in X's float dtype.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        module, device = self._inference_module()
        return self._batched(module.encode, X, self._n_features_out, device)

    def inverse_transform(self, X):
        """Decode codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by ``transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_)
            The decoder's reconstruction, in the codes' float dtype.
        """
        codes = self._validate_codes(X)
        module, device = self._inference_module()
        return self._batched(module.decode, codes, self.n_features_in_, device)

    def _reconstruction_errors(self, X):
        """Mean squared reconstruction error of each row of validated X."""
        module, device = self._inference_module()

        def row_errors(batch):
            return (module.reconstruct(batch) - batch).pow(2).mean(dim=1, keepdim=True)

        return self._batched(row_errors, X, 1, device).ravel()

    def score(self, X, y=None):
        """Minus the mean squared reconstruction error of X (higher is better).

        Lets ``GridSearchCV`` and ``cross_val_score`` choose hyper-parameters
        (``n_components``, ...) without labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to reconstruct.
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return -float(np.mean(self._reconstruction_errors(X), dtype=np.float64))


def _drop_fit_only_state(net):
    """Remove what only ``fit`` needs from a trained net.

    The held-out validation rows (``train_split``), the stopping rules and the
    best weights they saved would otherwise be pickled with the model (and stay
    on the GPU); ``partial_fit`` after ``fit`` does not early-stop.
    """
    net.train_split = None
    net.callbacks_ = [
        (name, callback) for name, callback in net.callbacks_
        if name not in ("early_stopping", "train_loss_plateau")
    ]
