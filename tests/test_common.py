"""scikit-learn's common estimator checks, run on every estimator."""

import pytest
from sklearn.utils.estimator_checks import (
    check_get_feature_names_out_error,
    check_param_validation,
    check_set_output_transform,
    check_transformer_get_feature_names_out,
    parametrize_with_checks,
)
from torch import nn

from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)

# Small, fast settings: the checks fit many times on tiny data. Every estimator
# has zero expected failures, except the checks listed (with their reasons) in
# EXPECTED_FAILED_CHECKS that cannot apply to PretrainedCNNFeatures.
ESTIMATORS = [
    AutoencoderTransformer(max_iter=20, hidden_layer_sizes=(8,), random_state=0,
                           device="cpu"),
    VAETransformer(max_iter=20, hidden_layer_sizes=(8,), random_state=0, device="cpu"),
    DictionaryLearner(n_components=3, alpha=0.1, max_iter=5, random_state=0,
                      device="cpu"),
    # Rows of any width are read as 1 x n images (image_shape=(1, 1, -1)), resized
    # to 4 x 4 and fed to a tiny CNN; its features are the input of its Linear head.
    PretrainedCNNFeatures(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
        weights=None, image_shape=(1, 1, -1), image_size=(4, 4), normalize=False,
        device="cpu"),
]

# Other settings of the same estimators, checked in the full suite (slow): the
# quick loop (-m "not slow") checks one setting per estimator (ESTIMATORS).
MORE_SETTINGS = [
    # More DictionaryLearner settings: one atom and one epoch, each other coder,
    # non-negative codes and atoms (the checks' y makes many fits supervised).
    DictionaryLearner(n_components=1, max_iter=1, random_state=0, device="cpu"),
    DictionaryLearner(n_components=8, max_iter=1, transform_algorithm="omp",
                      random_state=0, device="cpu"),
    DictionaryLearner(n_components=8, alpha=0.1, max_iter=2,
                      transform_algorithm="threshold", positive_code=True,
                      positive_dict=True, random_state=0, device="cpu"),
    # Other PretrainedCNNFeatures settings: a chosen layer with max pooling one image
    # per batch, and the flattened map of a non-square resize in odd batches.
    PretrainedCNNFeatures(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
        weights=None, image_shape=(1, 1, -1), image_size=(4, 4), normalize=False,
        layer="1", pooling="max", batch_size=1, device="cpu"),
    PretrainedCNNFeatures(
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 2)),
        weights=None, image_shape=(1, 1, -1), image_size=(3, 5), normalize=False,
        layer="1", pooling=None, batch_size=5, batch_invariant=False,
        device="cpu"),
]

EXPECTED_FAILED_CHECKS = {
    "PretrainedCNNFeatures": {
        "check_estimators_overwrite_params": (
            "the backbone parameter is a torch module, and joblib.hash of a module "
            "differs from that of its deepcopy (tensor pickles are not "
            "content-addressed); fit copies the module and never changes it, which "
            "tests/vision/test_estimator.py checks on its state_dict"
        ),
        "check_transformer_n_iter": (
            "max_iter counts fine-tuning epochs; the default frozen backbone "
            "(fine_tune_layers=0) trains none, so n_iter_ is 0"
        ),
    },
}


# What batch_invariant=False gives up, by design (its docstring): a short last
# batch runs at its own shape, whose kernels may round differently.
WITHOUT_BATCH_INVARIANCE = {
    "check_methods_subset_invariance": (
        "batch_invariant=False runs the short last batch as it is, so rows may "
        "differ by float rounding between a full and a by-batch transform "
        "(by 1.8e-7 in a run with 2 threads; equal in the full suite, as the "
        "kernels chosen decide); batch_invariant=True, the default, passes"
    ),
}


def _expected_failed_checks(estimator):
    expected = dict(EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {}))
    if estimator.get_params().get("batch_invariant") is False:
        expected.update(WITHOUT_BATCH_INVARIANCE)
    return expected


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks(MORE_SETTINGS,
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_on_more_settings(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "estimator",
    ESTIMATORS + [pytest.param(estimator, marks=pytest.mark.slow)
                  for estimator in MORE_SETTINGS],
    ids=lambda est: type(est).__name__)
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


# More settings of the neural estimators: the checks must pass on every
# setting, not only the defaults (issue 14: small max_iter, n_components 1 and
# 8, batches that do not divide the data, other losses and likelihoods, the
# sparsity penalty).
NEURAL_SETTINGS = [
    AutoencoderTransformer(n_components=1, max_iter=2, batch_size=3,
                           hidden_layer_sizes=(5, 3), activation="tanh",
                           random_state=0, device="cpu"),
    AutoencoderTransformer(n_components=8, max_iter=3, batch_size=7, denoising=0.2,
                           early_stopping=True, random_state=0, device="cpu"),
    # A sparse autoencoder with a linear encoder and decoder (its own loss).
    AutoencoderTransformer(n_components=3, max_iter=3, batch_size=7,
                           hidden_layer_sizes=(), sparsity=0.5, random_state=0,
                           device="cpu"),
    VAETransformer(n_components=1, max_iter=2, batch_size=5, random_state=0,
                   device="cpu"),
    VAETransformer(n_components=8, max_iter=2, batch_size=7, noise_variance=0.5,
                   n_importance_samples=3, kl_warmup=1, random_state=0,
                   device="cpu"),
]


# Slow: about 220 checks that fit. The quick loop keeps every check on one
# setting per estimator (ESTIMATORS above).
@pytest.mark.slow
@parametrize_with_checks(NEURAL_SETTINGS)
def test_neural_estimators_on_more_settings(estimator, check):
    check(estimator)
