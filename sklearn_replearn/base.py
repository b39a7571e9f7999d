"""Skeleton shared by every estimator: validation, tags, batched transforms."""

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted, validate_data

from ._version import __version__
from .exceptions import IncompatibleModelError, InconsistentVersionWarning
from .utils import batched_apply, resolve_device
from .utils._sklearn_compat import validate_params_now

__all__ = ["BaseRepresentation", "check_finite_float32", "check_unit_interval"]


def check_unit_interval(X, setting, alternative):
    """Raise a ValueError unless every value of X (dense or sparse) is in [0, 1].

    ``setting`` names what needs the range (e.g. ``"loss='bce'"``) and
    ``alternative`` the setting to use instead.
    """
    values = X.data if sp.issparse(X) else X
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            f"{setting} needs data in [0, 1]; X ranges over "
            f"[{values.min():.4g}, {values.max():.4g}]. Scale it with "
            f"MinMaxScaler, or use {alternative}."
        )


# The largest float32: larger values become inf when computed in float32.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_finite_float32(X, what="X"):
    """Raise a ValueError if a value of X (dense or sparse) overflows float32.

    The estimators compute in float32; a float64 value beyond ~3.4e38 would
    silently become inf there, and then NaN in the output.
    """
    values = X.data if sp.issparse(X) else X
    if values.size and values.dtype == np.float64:
        peak = float(np.abs(values).max())
        if peak > _FLOAT32_MAX:
            raise ValueError(
                f"{what} has values up to {peak:.3g} in magnitude, beyond float32's "
                f"largest ({_FLOAT32_MAX:.3g}), which these models compute in; "
                "scale X first (e.g. StandardScaler)."
            )


class BaseRepresentation(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Base class of the representation-learning transformers.

    Subclasses set ``_accepts_sparse`` and implement ``_n_features_out``
    (usually ``n_components``); they get input validation that preserves
    float32/float64, scikit-learn tags, feature names (``get_feature_names_out``
    and ``set_output``) and a batched transform helper.
    """

    # Whether X may be a scipy sparse matrix (then it is densified batch by batch).
    _accepts_sparse = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = self._accepts_sparse
        return tags

    def _validate_X(self, X, *, reset, params_checked=False):
        """Validate X; ``reset=True`` in ``fit`` records ``n_features_in_``.

        Outside ``fit`` (``reset=False``: transform, score, ...) the
        parameters are checked too, since ``set_params`` may have changed them
        after fitting (``fit`` has checked them already; ``params_checked``
        says a caller such as ``partial_fit`` has).
        """
        if not reset and not params_checked:
            self._check_params_after_fit()
        X = validate_data(
            self,
            X,
            reset=reset,
            accept_sparse="csr" if self._accepts_sparse else False,
            dtype=[np.float64, np.float32],
        )
        check_finite_float32(X)
        return X

    def _restored_on_failure(self):
        """A context in which an error leaves the estimator's state as it was."""
        return _RestoreOnFailure(self)

    # ----------------------------------------------------------- persistence
    def __getstate__(self):
        """The state pickle, joblib and skops save, with the library version."""
        # A copy: on Python >= 3.11 object.__getstate__ returns the live
        # __dict__.
        state = dict(super().__getstate__())
        state[_VERSION_KEY] = __version__
        return state

    def __setstate__(self, state):
        """Restore a saved estimator; warn when another version saved it.

        A state this version cannot read (a parameter it lacks, an object it
        cannot rebuild) raises an ``IncompatibleModelError`` that names both
        versions.
        """
        state = dict(state)
        saved = state.pop(_VERSION_KEY, None)
        if saved != __version__:
            warnings.warn(InconsistentVersionWarning(
                estimator_name=type(self).__name__, current_version=__version__,
                original_version=saved), stacklevel=2)
        try:
            missing = sorted(set(self._get_param_names()) - set(state))
            if missing:
                raise KeyError(f"it lacks the parameters {missing}")
            self._restore_state(state)
        except Exception as exc:
            what = "an unknown version" if saved is None else f"version {saved}"
            raise IncompatibleModelError(
                f"This {type(self).__name__} was saved by sklearn-replearn {what} "
                f"and cannot be read by version {__version__}: "
                f"{type(exc).__name__}: {exc}. Load it with the version that "
                f"saved it, or refit it with {__version__}."
            ) from exc

    def _restore_state(self, state):
        """Set the attributes from a saved state (the version key removed).

        Subclasses that rebuild objects from plain data override it and call
        ``super()._restore_state``.
        """
        super().__setstate__(state)

    def _check_params_after_fit(self):
        """Check the parameters that inference uses (all, by default)."""
        validate_params_now(self)

    def _validate_codes(self, codes):
        """Validate the input of ``inverse_transform`` (one row of codes per sample)."""
        check_is_fitted(self)
        self._check_params_after_fit()
        codes = check_array(codes, dtype=[np.float64, np.float32])
        check_finite_float32(codes, "codes")
        if codes.shape[1] != self._n_features_out:
            raise ValueError(
                f"inverse_transform expects codes with {self._n_features_out} columns "
                f"(n_components), got an array with {codes.shape[1]} columns; pass the "
                "output of transform."
            )
        return codes

    def _resolve_device(self):
        return resolve_device(self.device)

    def _inference_device(self):
        """The requested device, or the CPU when it does not exist here.

        A model fit on a GPU and unpickled on a CPU-only machine must still
        transform (its weights are stored on the CPU); it warns once per call.
        """
        try:
            return resolve_device(self.device)
        except ValueError as exc:
            warnings.warn(
                f"{type(self).__name__}: {exc} Running on the CPU instead; set "
                "device='cpu' (set_params) to silence this warning.",
                UserWarning,
                stacklevel=3,
            )
            return torch.device("cpu")

    def _batched(self, function, X, n_outputs, device, batch_size=None,
                 fixed_shape=False):
        """Apply ``function`` to X in batches of ``batch_size`` rows on ``device``.

        ``batch_size`` defaults to the estimator's. The result has X's float
        dtype (float32 or float64). ``fixed_shape=True`` pads the last batch
        (see :func:`~sklearn_replearn.utils.batched_apply`).
        """
        return batched_apply(
            function,
            X,
            n_outputs=n_outputs,
            batch_size=self.batch_size if batch_size is None else batch_size,
            device=device,
            out_dtype=X.dtype,
            fixed_shape=fixed_shape,
        )


# The key under which a saved state records the library version.
_VERSION_KEY = "_replearn_version"


class _RestoreOnFailure:
    """Put an estimator's attributes back as they were if the block raises.

    ``fit`` validates X first (which records ``n_features_in_``), then learns
    new state: an error anywhere must not leave new attributes beside old
    ones. Fitted attributes are rebound, never mutated in place, until the
    fit succeeds, so a shallow copy of ``__dict__`` restores them. (A
    ``partial_fit`` that trains a model in place must also restore what it
    mutated.) Training loops catch Ctrl-C themselves (the model keeps what
    it learned); a KeyboardInterrupt that reaches here came from elsewhere
    (a download, reading files) and restores the state too.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def __enter__(self):
        self.saved = dict(vars(self.estimator))

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            state = vars(self.estimator)
            state.clear()
            state.update(self.saved)
        return False
