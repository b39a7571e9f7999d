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

from ._utils import batched_apply, resolve_device
from ._utils._sklearn_compat import validate_params_now
from ._version import __version__
from .exceptions import IncompatibleModelError, InconsistentVersionWarning

__all__ = ["BaseRepresentation"]


def _check_unit_interval(X, setting, alternative):
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


def _check_finite_float32(X, what="X"):
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


# Largest squared sample norm accepted: float32 (largest ~3.4e38) must hold a
# sample's squared norm summed over a batch (a reconstruction error, the
# dictionary's sufficient statistics), with room to spare.
SQUARED_NORM_LIMIT = _FLOAT32_MAX * 1e-6


def _check_squares_fit_float32(X, owner, *, limit=SQUARED_NORM_LIMIT,
                              what="the float32 arithmetic"):
    """Raise a ValueError if X's squared norms overflow float32 arithmetic.

    Values below float32's largest can still have squares beyond it (e.g.
    1e30 ** 2): squared errors, objectives and Gram matrices then become inf
    and NaN inside torch, and a score comes back as -inf or NaN. ``owner``
    names the estimator in the message; ``what`` names the computation that
    overflows and ``limit`` its largest squared norm.
    """
    if not X.size:
        return
    # max(max, -min) needs no temporary copy of X, unlike abs(X).max().
    peak = max(float(X.max()), -float(X.min()))
    bound = peak * peak * X.shape[1]
    if bound > limit:
        raise ValueError(
            f"X has values up to {peak:.3g} in magnitude: squared and summed over "
            f"its {X.shape[1]} features (up to {bound:.3g}) they overflow "
            f"{what} {owner} computes in (float32, largest {_FLOAT32_MAX:.3g}). "
            "Scale X first, e.g. with StandardScaler or by dividing it by its "
            "largest value."
        )


def _first_text_value(values):
    """The first string in ``values`` that is not a number, or None."""
    for value in np.asarray(values, dtype=object).ravel():
        if isinstance(value, (str, bytes)):
            try:
                float(value)
            except ValueError:
                return value
    return None


def _text_in(X):
    """``(columns, value)``: the columns of X (names of a DataFrame's, else
    indices) that hold strings or string categories, and one such value;
    ``(None, None)`` when X holds none (a failed conversion has another cause).
    """
    dtypes = getattr(X, "dtypes", None)
    if hasattr(X, "columns") and hasattr(dtypes, "items"):
        columns = [(name, X[name]) for name, dtype in dtypes.items()
                   if getattr(dtype, "kind", "O") not in "biufc"]
    else:
        if sp.issparse(X) or getattr(getattr(X, "dtype", None), "kind",
                                     "O") not in "OUS":
            return None, None
        try:
            X = np.asarray(X, dtype=object)
        except (TypeError, ValueError):  # ragged lists: not a question of strings
            return None, None
        if X.ndim != 2:
            return None, None
        columns = enumerate(X.T)
    found = [(name, value) for name, value in (
        (name, _first_text_value(column)) for name, column in columns)
        if value is not None]
    if not found:
        return None, None
    return [name for name, _ in found], found[0][1]


def _non_numeric_error(X, owner):
    """Our ValueError for X holding strings or categories, or None.

    numpy's "could not convert string to float" names neither the column
    nor the fix.
    """
    columns, example = _text_in(X)
    if example is None:
        return None
    names = [name if isinstance(name, (int, np.integer)) else str(name)
             for name in columns]
    shown = [int(n) if isinstance(n, np.integer) else n for n in names[:10]]
    listed = repr(shown) if len(names) <= 10 else f"{repr(shown)[:-1]}, ...]"
    return ValueError(
        f"X has non-numeric values: column(s) {listed} hold strings or "
        f"categories (e.g. {example!r}), and {owner} learns from numbers only. "
        "Encode categories first, e.g. with OneHotEncoder in a "
        f"ColumnTransformer: make_column_transformer((OneHotEncoder(), {listed}), "
        "remainder='passthrough')."
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
        try:
            X_valid = validate_data(
                self,
                X,
                reset=reset,
                accept_sparse="csr" if self._accepts_sparse else False,
                dtype=[np.float64, np.float32],
            )
        except (TypeError, ValueError) as error:
            ours = _non_numeric_error(X, type(self).__name__)
            if ours is None:
                raise
            raise ours from error
        X = X_valid
        _check_finite_float32(X)
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
        _check_finite_float32(codes, "codes")
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
        dtype (float32 or float64). ``fixed_shape=True`` pads each batch to
        whole 16-row tiles (see :func:`~sklearn_replearn._utils.batched_apply`).
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
