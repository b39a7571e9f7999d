"""What every estimator shares (``base.py``): saved models record the library
version; another version warns on loading, an unreadable state names both."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

import sklearn_replearn
from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)
from sklearn_replearn import base as base_module
from sklearn_replearn.exceptions import (
    IncompatibleModelError,
    InconsistentVersionWarning,
)

OTHER_VERSION = "0.0.1"


@pytest.fixture(scope="module")
def X():
    return load_digits().data[:60].astype(np.float32) / 16


def _fitted(name, X):
    if name == "pretrained":
        from torch import nn

        cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 6 * 6, 3))
        return PretrainedCNNFeatures(backbone=cnn, weights=None, layer="2",
                                     image_shape=(1, 8, 8), normalize=False,
                                     image_size=8, device="cpu").fit(X)
    estimators = {
        "ae": AutoencoderTransformer(n_components=4, max_iter=2, tol=None,
                                     random_state=0, device="cpu"),
        "vae": VAETransformer(n_components=2, max_iter=2, tol=None,
                              random_state=0, device="cpu"),
        "dictionary": DictionaryLearner(n_components=6, alpha=0.1, max_iter=2, tol=None,
                                        random_state=0, device="cpu"),
    }
    return estimators[name].fit(X)


NAMES = ["ae", "vae", "dictionary", "pretrained"]


def _state(model):
    """The state pickle saves (PretrainedCNNFeatures's own module included)."""
    return dict(model.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[2])


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_model_records_the_version_and_loads_silently(name, X):
    model = _fitted(name, X)
    data = pickle.dumps(model)
    assert _state(model)["_replearn_version"] == sklearn_replearn.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        loaded = pickle.loads(data)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))


@pytest.mark.parametrize("name", NAMES)
def test_another_version_warns_and_names_both(name, X, monkeypatch):
    model = _fitted(name, X)
    monkeypatch.setattr(base_module, "__version__", OTHER_VERSION)
    data = pickle.dumps(model)
    monkeypatch.undo()
    with pytest.warns(InconsistentVersionWarning) as record:
        loaded = pickle.loads(data)
    warning = record[0].message
    assert warning.original_version == OTHER_VERSION
    assert warning.current_version == sklearn_replearn.__version__
    assert warning.estimator_name == type(model).__name__
    assert OTHER_VERSION in str(warning)
    assert sklearn_replearn.__version__ in str(warning)
    # The structure is the same here, so the model still works.
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))


def test_a_file_without_a_version_warns_as_unknown(X):
    model = _fitted("dictionary", X)
    state = _state(model)
    del state["_replearn_version"]
    with pytest.warns(InconsistentVersionWarning, match="unknown version"):
        DictionaryLearner.__new__(DictionaryLearner).__setstate__(state)


@pytest.mark.parametrize("name", NAMES)
def test_an_unreadable_state_names_both_versions(name, X):
    model = _fitted(name, X)
    state = _state(model)
    state["_replearn_version"] = OTHER_VERSION
    # A parameter renamed in the version that saved the file.
    state["renamed_parameter"] = state.pop("random_state")
    fresh = type(model).__new__(type(model))
    with pytest.warns(InconsistentVersionWarning):
        with pytest.raises(IncompatibleModelError) as error:
            fresh.__setstate__(state)
    message = str(error.value)
    assert f"version {OTHER_VERSION}" in message
    assert f"version {sklearn_replearn.__version__}" in message
    assert "random_state" in message


def test_a_dictionary_missing_its_fitted_statistics_is_refused(X):
    state = _state(_fitted("dictionary", X))
    del state["_A"]
    with pytest.raises(IncompatibleModelError, match=r"lacks \['_A'\]"):
        DictionaryLearner.__new__(DictionaryLearner).__setstate__(state)


def test_an_autoencoder_whose_weights_do_not_fit_is_refused(X):
    state = _state(_fitted("ae", X))
    state["n_features_in_"] = 10  # the saved weights are for 64 features
    with pytest.raises(IncompatibleModelError, match="cannot be read by version"):
        AutoencoderTransformer.__new__(AutoencoderTransformer).__setstate__(state)


@pytest.mark.parametrize("name", ["ae", "dictionary"])
def test_skops_files_record_the_version_too(name, X, monkeypatch):
    sio = pytest.importorskip("skops.io")
    model = _fitted(name, X)
    monkeypatch.setattr(base_module, "__version__", OTHER_VERSION)
    data = sio.dumps(model)
    monkeypatch.undo()
    trusted = sio.get_untrusted_types(data=data)
    assert trusted == [f"{type(model).__module__}.{type(model).__name__}"]
    with pytest.warns(InconsistentVersionWarning, match=OTHER_VERSION):
        loaded = sio.loads(data, trusted=trusted)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
