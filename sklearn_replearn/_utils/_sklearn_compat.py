"""The one door to scikit-learn's private API.

scikit-learn's parameter validation (``_fit_context``, ``Interval``,
``StrOptions``, ...) is what its own estimators use, but it lives in private
modules that may move between releases. Every module of this package imports
it from here, so a move is fixed in one place (imbalanced-learn does the same
in ``imblearn.utils._sklearn_compat``).
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)

__all__ = [
    "HasMethods",
    "Interval",
    "Options",
    "StrOptions",
    "fit_context",
    "validate_params_now",
]

fit_context = _fit_context


def validate_params_now(estimator):
    """Check ``estimator``'s parameters against its ``_parameter_constraints``.

    What ``_fit_context`` does before ``fit``, for the other entry points
    (``partial_fit``, ``transform``, ``score``, ...): it honours scikit-learn's
    ``skip_parameter_validation`` setting, so nested estimators validated once
    by their meta-estimator are not validated again.
    """
    from sklearn import get_config

    if get_config()["skip_parameter_validation"]:
        return
    validate_parameter_constraints(
        estimator._parameter_constraints,
        estimator.get_params(deep=False),
        caller_name=type(estimator).__name__,
    )
