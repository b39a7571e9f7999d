"""The shared base of the encoder-decoder estimators (autoencoder, VAE).

:class:`BaseNeuralTransformer` holds what both estimators share: their common
parameters and constraints, building the encoder and decoder from
``architecture``/``hidden_layer_sizes`` (or the user's modules), validation,
seeding, the optional validation split, and batched inference. It asks the
engine (``_engine``) to build, train and strip the skorch net (``net_``).

A subclass says how to wrap the encoder and decoder into its torch module
(``_build_module``), which criterion trains it (``_make_criterion``), and may
add data checks (``_check_training_values``) and a warm-up
(``_training_warmup``).
"""

import math
import warnings
from contextlib import contextmanager
from copy import deepcopy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._engine import (
    OPTIMIZERS,
    ReconstructionNet,
    build_net,
    load_net_state,
    net_from_state,
    net_settings,
    net_state,
    strip_net,
    train_net,
    training_device,
    update_net,
)
from .._utils import check_image_shape, seeded
from .._utils._precision import training_autocast_dtype
from .._utils._sklearn_compat import (
    HasMethods,
    Interval,
    StrOptions,
    fit_context,
    validate_params_now,
)
from ..base import BaseRepresentation, _check_squares_fit_float32
from ._modules import ACTIVATIONS, make_conv_decoder, make_conv_encoder, make_mlp

__all__ = ["BaseNeuralTransformer"]

# max_iter="auto": epochs for about this many gradient steps, so that a small
# data set (a step or two per epoch) trains as long as a large one, within
# these bounds on the epochs.
_AUTO_STEPS = 5_000
_AUTO_EPOCHS = (20, 2_000)


class BaseNeuralTransformer(BaseRepresentation):
    """Fit/partial_fit/transform machinery for encoder-decoder torch modules.

    Subclasses implement:

    * ``_build_module(encoder, decoder, n_features)`` -> a ``torch.nn.Module``
      with ``encode``, ``decode`` and ``reconstruct`` methods, and ``forward``
      giving what the loss takes (the module may define ``loss(output, X)``);
    * ``_encoder_width()`` -> the encoder's output width (``n_components``,
      or twice that for a VAE's mean and log-variance);
    * ``_make_criterion()`` -> a torch loss class, or None when the module
      defines ``loss``;
    * optionally ``_check_training_values(X)`` (data checks) and
      ``_training_warmup()``.
    """

    _accepts_sparse = True

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "architecture": [StrOptions({"mlp", "conv"})],
        "image_shape": ["array-like", None],
        "encoder": [nn.Module, None],
        "decoder": [nn.Module, None],
        "max_iter": [Interval(Integral, 1, None, closed="left"),
                     StrOptions({"auto"})],
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
        "autocast": ["boolean"],
        "accelerator": [HasMethods(["prepare", "unwrap_model", "autocast"]), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # The parameters both estimators take, set by _set_shared_parameters.
    # (Each estimator still lists them in its own __init__ signature:
    # scikit-learn's get_params reads the signature.)
    _SHARED_PARAMETERS = (
        "n_components", "hidden_layer_sizes", "activation", "architecture",
        "image_shape", "encoder", "decoder", "max_iter", "batch_size",
        "learning_rate", "optimizer", "weight_decay", "early_stopping",
        "validation_fraction", "n_iter_no_change", "tol", "callbacks", "device",
        "autocast", "accelerator", "random_state", "verbose",
    )

    # max_iter="auto"'s gradient steps (an estimator whose objective needs
    # more steps raises it).
    _auto_steps = _AUTO_STEPS

    # Parameters that shape the network or its loss: partial_fit continues
    # the network built by fit, so they cannot change between the two.
    # (Training settings such as learning_rate and batch_size can.)
    # Your own encoder/decoder modules count too (compared by identity).
    _STRUCTURAL_PARAMETERS = (
        "n_components", "hidden_layer_sizes", "activation", "architecture",
        "image_shape", "optimizer", "encoder", "decoder",
    )

    def _structure(self):
        """The structural parameters as plain, comparable values."""
        def plain(value):
            if isinstance(value, type):
                return f"{value.__module__}.{value.__qualname__}"
            if isinstance(value, (list, tuple, np.ndarray)):
                return [plain(item) for item in np.asarray(value).tolist()]
            return value

        return {name: plain(getattr(self, name))
                for name in self._STRUCTURAL_PARAMETERS}

    def _remember_structure(self):
        """Record the structural parameters the net was built with: their
        plain form (compared by ``partial_fit``) and the values themselves
        (the module is rebuilt from them on load, whatever ``set_params``
        changed since)."""
        self._built_structure = self._structure()
        self._built_parameters = {name: getattr(self, name)
                                  for name in self._STRUCTURAL_PARAMETERS}

    @contextmanager
    def _built_parameters_set(self):
        """The structural parameters temporarily set back to those the net
        was built with."""
        built = self._built_parameters
        current = {name: getattr(self, name) for name in built}
        for name, value in built.items():
            setattr(self, name, value)
        try:
            yield
        finally:
            for name, value in current.items():
                setattr(self, name, value)

    def _check_unchanged_structure(self):
        """Raise if a structural parameter changed since the net was built."""
        built = self._built_structure
        for name, value in self._structure().items():
            if built.get(name) != value:
                raise ValueError(
                    f"partial_fit continues the network built with {name}="
                    f"{built.get(name)!r}, but {name} is now {value!r}. Call fit "
                    f"to train a new network, or set {name} back."
                )

    def _set_shared_parameters(self, arguments):
        """Store the shared parameters from a subclass's ``__init__`` locals."""
        for name in self._SHARED_PARAMETERS:
            setattr(self, name, arguments[name])

    # ----------------------------------------------------------------- hooks
    def _build_module(self, encoder, decoder, n_features):  # pragma: no cover
        raise NotImplementedError

    def _encoder_width(self):
        return self.n_components

    def _make_criterion(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_training_values(self, X):
        """Data-dependent checks on validated training data (none by default)."""

    def _initialize_module(self, module, X, seed):
        """Set a freshly built module's starting weights from the training
        data X (nothing by default: the layers' own initialisation).

        Returns ``(start, reference_loss)``: what ``_after_training`` needs
        to know of the start, and the loss the divergence check measures
        explosions from (None for both: the first batch's loss). A start
        that already fits X well needs the latter: its first loss may be ~0.
        """
        return None, None

    def _after_training(self, module, valid_X, start):
        """Adjust the trained module, given the validation rows (None
        without early stopping) and what ``_initialize_module`` returned.

        Returns the validation loss of the weights kept when they are not
        the trained ones (None by default: nothing changes).
        """
        return None

    def _epoch_budget(self, n_train):
        """Most epochs of a fit on ``n_train`` rows: ``max_iter``, or for
        ``max_iter="auto"`` the epochs that make about ``_auto_steps``
        gradient steps, within ``_AUTO_EPOCHS`` (``n_train=None``: the most).
        """
        if self.max_iter != "auto":
            return int(self.max_iter)
        low, high = _AUTO_EPOCHS
        if n_train is None:
            return high
        steps_per_epoch = max(1, math.ceil(n_train / self.batch_size))
        return int(min(max(math.ceil(self._auto_steps / steps_per_epoch), low), high))

    def _training_warmup(self):
        """``(module attribute, final value, epochs)`` to anneal, or None.

        During the warm-up epochs neither early stopping nor the ``tol``
        plateau rule applies (the VAE anneals its KL weight then).
        """
        return None

    # --------------------------------------------------------------- fitting
    @fit_context(prefer_skip_nested_validation=True)
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
        with self._restored_on_failure():
            X = self._validate_X(X, reset=True)
            self._check_training_values(X)
            device = training_device(self.device, self.accelerator)
            with seeded(self.random_state, device) as seed:
                train_X, valid_X = self._split_validation(X, seed)
                module = self._checked_module(X.shape[1], device)
                # All rows: a start computed from them (PCA) is what the
                # model falls back on, and it should miss none of the data.
                start, reference = self._initialize_module(module, X, seed)
                budget = self._epoch_budget(train_X.shape[0])
                net = self._build_net(module, device, valid_X=valid_X,
                                      max_epochs=budget, reference_loss=reference)
                record = train_net(net, train_X)
                kept_start = self._after_training(net.module_, valid_X, start)
            strip_net(net)
            self.net_ = net
            self._remember_structure()
            self._fit_dtype = X.dtype.name
            self._record(record, warn_if_not_converged=True, max_epochs=budget)
            if kept_start is not None:
                self.best_validation_score_ = -kept_start
        return self

    def partial_fit(self, X, y=None):
        """Train for one epoch on X, continuing from the current weights.

        The first call builds the network; later calls must pass data with the
        same number of features. Early stopping does not apply. Each call
        trains with the current ``learning_rate``, ``weight_decay``,
        ``batch_size`` and ``verbose``; the parameters that shape the network
        (``n_components``, ``hidden_layer_sizes``, ``activation``,
        ``architecture``, ``image_shape``, ``optimizer``, and each
        estimator's loss parameters) must stay as they were, and
        ``callbacks`` are those of the first call (or of ``fit``).

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
        # The current parameters apply (validated as fit does), except those
        # that shape the network built by the first call.
        validate_params_now(self)
        if not first_call:
            self._check_unchanged_structure()
        with self._restored_on_failure():
            X = self._validate_X(X, reset=first_call, params_checked=True)
            self._check_training_values(X)
            if first_call:
                device = training_device(self.device, self.accelerator)
            else:
                device = torch.device(self.net_.device)
            with seeded(self.random_state, device,
                        offset=getattr(self, "n_iter_", 0)) as seed:
                if first_call:
                    module = self._checked_module(X.shape[1], device)
                    _, reference = self._initialize_module(module, X, seed)
                    net = self._build_net(module, device, valid_X=None,
                                          for_partial_fit=True,
                                          reference_loss=reference)
                else:
                    net = self.net_
                record = self._train_in_place(net, X)
            self.net_ = net
            if first_call:
                self._remember_structure()
                self._fit_dtype = X.dtype.name
            self._record(record, warn_if_not_converged=False)
        return self

    def _train_in_place(self, net, X):
        """One more epoch of a net, with the current training settings.

        The weights, the optimizer's state and the settings are changed in
        place, so a failure (divergence, an error in a callback, Ctrl-C
        outside the epoch loop) must put all of them back.
        """
        if not net.initialized_:
            return train_net(net, X, epochs=1)
        saved, settings = net_state(net), net_settings(net)
        history = list(net.history)
        update_net(net, learning_rate=self.learning_rate,
                   weight_decay=self.weight_decay, batch_size=self.batch_size,
                   verbose=self.verbose, warmup=self._training_warmup())
        try:
            return train_net(net, X, epochs=1)
        except BaseException:
            load_net_state(net, saved)
            update_net(net, **settings)
            # The epochs before this call, with their per-batch rows.
            net.history = type(net.history)(history)
            raise

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

    def _encoder_and_decoder(self, n_features):
        """The user's ``encoder``/``decoder`` (copied), or the built-in pair.

        The encoder maps ``n_features`` to ``_encoder_width()`` values (the
        code, or a VAE's mean and log-variance); the decoder maps
        ``n_components`` back to ``n_features``.
        """
        if (self.encoder is None) != (self.decoder is None):
            raise ValueError(
                "Pass both encoder and decoder modules, or neither (to use the "
                f"built-in {self.architecture!r} architecture)."
            )
        if self.encoder is not None:
            return deepcopy(self.encoder), deepcopy(self.decoder)
        hidden = _checked_layer_sizes(self.hidden_layer_sizes)
        width = self._encoder_width()
        if self.architecture == "mlp":
            return (
                make_mlp((n_features, *hidden, width), self.activation),
                make_mlp((self.n_components, *hidden[::-1], n_features),
                         self.activation),
            )
        image_shape = check_image_shape(self.image_shape, n_features,
                                        needed_by="architecture='conv'")
        return (
            make_conv_encoder(image_shape, hidden, width, self.activation),
            make_conv_decoder(image_shape, hidden, self.n_components,
                              self.activation),
        )

    def _checked_module(self, n_features, device):
        """Build the module and check that it maps X to codes and back."""
        encoder, decoder = self._encoder_and_decoder(n_features)
        module = self._build_module(encoder, decoder, n_features)
        with torch.no_grad():
            probe = torch.zeros(2, n_features)
            was_training = module.training
            module.eval()
            code = self._probe_module(module.encode, probe, "encoder",
                                      f"(batch, n_features={n_features})")
            if code.ndim != 2 or code.shape[0] != 2:
                raise ValueError(
                    "The encoder must map a batch of shape (batch, n_features) to "
                    f"codes of shape (batch, n_components); a batch of shape "
                    f"{tuple(probe.shape)} gave {tuple(code.shape)}."
                )
            reconstruction = self._probe_module(
                module.decode, code, "decoder",
                f"(batch, {code.shape[1]}) codes (the encoder's output width)")
            if tuple(reconstruction.shape) != (2, n_features):
                raise ValueError(
                    "The decoder must map codes back to (batch, n_features) = "
                    f"(2, {n_features}); it gave {tuple(reconstruction.shape)}. "
                    "Check that the decoder's output width matches X."
                )
            module.train(was_training)
        self._n_components_out = int(code.shape[1])
        return module.to(device)

    @staticmethod
    def _probe_module(function, batch, name, expected):
        """``function(batch)``, torch's shape or dtype errors as a ValueError."""
        try:
            return function(batch)
        except RuntimeError as error:
            raise ValueError(
                f"The {name} cannot take {expected}: {error}. Check its input "
                "width (and that its parameters are float32, the models' dtype)."
            ) from error

    def _build_net(self, module, device, *, valid_X, for_partial_fit=False,
                   max_epochs=None, reference_loss=None):
        early_stopping = self.early_stopping and not for_partial_fit
        return build_net(
            module,
            criterion=self._make_criterion(),
            device=device,
            owner=type(self).__name__,
            max_iter=(self._epoch_budget(None) if max_epochs is None
                      else max_epochs),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            early_stopping=early_stopping,
            valid_X=valid_X if early_stopping else None,
            n_iter_no_change=self.n_iter_no_change,
            tol=None if for_partial_fit else self.tol,
            verbose=self.verbose,
            # Copies, so that fitting never changes the user's callback objects.
            callbacks=deepcopy(self.callbacks or []),
            warmup=self._training_warmup(),
            accelerator=self.accelerator,
            reference_loss=reference_loss,
            autocast_dtype=(None if self.accelerator is not None else
                            training_autocast_dtype(device, self.autocast)),
        )

    def _record(self, record, warn_if_not_converged, max_epochs=None):
        """Fitted attributes from the engine's :class:`TrainingRecord`."""
        self.loss_curve_ = record.loss_curve
        # Completed epochs (an epoch interrupted by Ctrl-C has no loss).
        self.n_iter_ = record.n_epochs
        if self.early_stopping and record.valid_curve:
            self.validation_scores_ = [-loss for loss in record.valid_curve]
            # Warm-up epochs (the VAE's KL annealing) never provide the kept
            # weights, so they cannot provide the best score either; a fit
            # that ended within its warm-up keeps its last epoch.
            warmup = self._training_warmup()
            after = self.validation_scores_[warmup[2] if warmup else 0:]
            self.best_validation_score_ = (max(after) if after
                                           else self.validation_scores_[-1])
        elif not self.early_stopping:
            # Left over from an earlier fit with early stopping.
            self.__dict__.pop("validation_scores_", None)
            self.__dict__.pop("best_validation_score_", None)
        self._record_terms(record.terms)
        if warn_if_not_converged and self.n_iter_ >= max_epochs and not (
                record.interrupted or record.converged) and (
                self.tol is not None or self.early_stopping):
            budget = (f"max_iter={self.max_iter}" if self.max_iter != "auto"
                      else f"max_iter='auto' ({max_epochs})")
            warnings.warn(
                f"{type(self).__name__} stopped at {budget} epochs "
                "while the loss was still improving; increase max_iter for a "
                "better fit.",
                ConvergenceWarning,
            )

    def _record_terms(self, terms):
        """Fitted attributes from the per-epoch loss terms (none by default)."""

    # ----------------------------------------------------------- persistence
    def __getstate__(self):
        """The estimator as plain data: parameters, fitted numbers, weights.

        The trained net is saved as its weights, optimizer state and history
        (numpy arrays and numbers, :func:`~sklearn_replearn._engine.net_state`)
        and rebuilt from the estimator's own parameters on load, so that a
        pickle holds no torch or skorch objects and ``skops.io`` loads it
        trusting only this class. With your own ``encoder``/``decoder``
        modules, skorch ``callbacks`` or an ``accelerator``, those parameters
        are objects: pickle/joblib save them (load such files only from
        sources you trust), skops cannot.
        """
        # A copy: on Python 3.11 object.__getstate__ returns the live __dict__.
        state = dict(super().__getstate__())
        net = state.pop("net_", None)
        if net is not None and type(net) is ReconstructionNet:
            state["_net_state"] = net_state(net)
        elif net is not None:
            # Accelerate's wrapped nets are kept whole (as before).
            state["net_"] = net
        return state

    def _restore_state(self, state):
        net = state.pop("_net_state", None)
        super()._restore_state(state)
        if net is not None:
            # Built as fitted: a structural parameter changed by set_params
            # after fit (sparsity, hidden_layer_sizes, ...) would otherwise
            # build a module the saved weights do not fit, and the file would
            # save but not load.
            with self._built_parameters_set():
                with seeded(0, torch.device("cpu")):
                    module = self._checked_module(self.n_features_in_,
                                                  torch.device("cpu"))
                built = self._build_net(module, torch.device("cpu"), valid_X=None,
                                        for_partial_fit=True)
            self.net_ = net_from_state(built, net)

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
        return self._batched(module.encode, X, self._n_features_out, device,
                             fixed_shape=True)

    def inverse_transform(self, X):
        """Decode codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by ``transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, ``n_features_in_``)
            The decoder's reconstruction, in the codes' float dtype.
        """
        codes = self._validate_codes(X)
        module, device = self._inference_module()
        return self._batched(module.decode, codes, self.n_features_in_, device,
                             fixed_shape=True)

    def _reconstruction_errors(self, X):
        """Mean squared reconstruction error of each row of validated X."""
        module, device = self._inference_module()

        def row_errors(batch):
            return (module.reconstruct(batch) - batch).pow(2).mean(dim=1, keepdim=True)

        return self._batched(row_errors, X, 1, device, fixed_shape=True).ravel()

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
        # Squared errors of values beyond ~1e16 overflow float32: -inf, NaN.
        _check_squares_fit_float32(X, type(self).__name__)
        return -float(np.mean(self._reconstruction_errors(X), dtype=np.float64))


def _checked_layer_sizes(hidden_layer_sizes):
    """hidden_layer_sizes as a tuple of positive ints, or a clear ValueError."""
    sizes = np.atleast_1d(np.asarray(hidden_layer_sizes, dtype=object)).tolist()
    if not all(isinstance(size, Integral) and size > 0 for size in sizes):
        raise ValueError(
            "hidden_layer_sizes must be positive integers, e.g. (128,) or (256, 64); "
            f"got {hidden_layer_sizes!r}."
        )
    return tuple(int(size) for size in sizes)
