"""scikit-learn's common estimator checks, run on every estimator."""

import pytest
from sklearn.utils.estimator_checks import (
    check_get_feature_names_out_error,
    check_param_validation,
    check_set_output_transform,
    check_transformer_get_feature_names_out,
    parametrize_with_checks,
)

from sklearn_replearn import AutoencoderTransformer

# Small, fast settings: the checks fit many times on tiny data. Each estimator is
# checked with zero expected failures.
ESTIMATORS = [
    AutoencoderTransformer(max_iter=20, hidden_layer_sizes=(8,), random_state=0,
                           device="cpu"),
]

EXPECTED_FAILED_CHECKS = {}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda est: type(est).__name__)
@pytest.mark.parametrize(
    "check",
    [
        check_set_output_transform,
        check_transformer_get_feature_names_out,
        check_get_feature_names_out_error,
        check_param_validation,
    ],
    ids=lambda check: check.__name__,
)
def test_extra_sklearn_checks(estimator, check):
    check(type(estimator).__name__, estimator)
