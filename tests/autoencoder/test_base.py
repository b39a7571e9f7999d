"""Saving and loading fitted estimators: pickle, joblib and skops.

A fitted estimator's state is plain data (parameters, numpy arrays, numbers),
so ``skops.io`` loads it trusting only this library's classes, and a file
tampered with to call a function is refused.
"""

import copy
import io
import json
import pickle
import warnings
import zipfile

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits

from sklearn_replearn import AutoencoderTransformer, VAETransformer

sio = pytest.importorskip("skops.io")


@pytest.fixture(scope="module")
def X():
    return load_digits().data[:300] / 16.0


def _fitted(make, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make().fit(X)


NEURAL = {
    "ae": lambda: AutoencoderTransformer(n_components=3, max_iter=3, random_state=0),
    "ae-conv-early-stopping": lambda: AutoencoderTransformer(
        n_components=3, architecture="conv", image_shape=(1, 8, 8),
        hidden_layer_sizes=(4,), early_stopping=True, max_iter=3, random_state=0),
    "vae-warmup": lambda: VAETransformer(
        n_components=2, likelihood="bernoulli", kl_warmup=2, max_iter=3,
        random_state=0),
}


def _ours_only(types):
    return all(name.startswith("sklearn_replearn.") for name in types)


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_skops_round_trip_trusts_only_our_classes(X, name):
    est = _fitted(NEURAL[name], X)
    data = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == [f"{type(est).__module__}.{type(est).__name__}"]
    loaded = sio.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    # The loaded model trains on exactly as the original does.
    loaded.partial_fit(X)
    est.partial_fit(X)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    assert loaded.n_iter_ == est.n_iter_


@pytest.mark.parametrize("name", sorted(NEURAL))
def test_pickle_and_joblib_hold_no_torch_or_skorch_objects(X, name, tmp_path):
    est = _fitted(NEURAL[name], X)
    blob = pickle.dumps(est)
    assert b"skorch" not in blob and b"torch" not in blob
    np.testing.assert_array_equal(pickle.loads(blob).transform(X), est.transform(X))
    joblib.dump(est, tmp_path / "model.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "model.joblib").transform(X), est.transform(X))


def _tampered(data, key, node):
    """``data`` (a skops file) with the estimator's attribute ``key`` replaced."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    schema["content"]["content"][key] = node(schema) if callable(node) else node
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            content = (json.dumps(schema).encode() if item == "schema.json"
                       else source.read(item))
            target.writestr(item, content)
    return out.getvalue()


@pytest.mark.parametrize("node", [
    {"__class__": "system", "__module__": "os", "__loader__": "FunctionNode",
     "content": {"module_path": "os", "function": "system"}},
    # An object of a foreign class, built from a well-formed state (the
    # estimator's saved net state).
    lambda schema: {"__class__": "Popen", "__module__": "subprocess",
                    "__loader__": "ObjectNode",
                    "content": schema["content"]["content"]["_net_state"]},
])
def test_a_tampered_skops_file_is_refused(X, node):
    est = _fitted(NEURAL["ae"], X)
    data = _tampered(sio.dumps(est), "verbose", node)
    untrusted = sio.get_untrusted_types(data=data)
    assert not _ours_only(untrusted)
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.loads(data, trusted=[f"{type(est).__module__}.{type(est).__name__}"])


def test_own_modules_need_pickle_and_say_so(X):
    """skops cannot save user nn.Modules (torch tensors); pickle can."""
    import torch

    est = _fitted(lambda: AutoencoderTransformer(
        encoder=torch.nn.Linear(64, 2), decoder=torch.nn.Linear(2, 64),
        max_iter=2, random_state=0), X)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(est)).transform(X), est.transform(X))
    assert "skops cannot" in type(est).__getstate__.__doc__


@pytest.mark.parametrize("saved_device", ["cuda:7", "mps", "cuda"])
def test_a_model_saved_on_a_device_missing_here_loads_on_the_cpu(X, saved_device):
    import torch

    if saved_device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has the device")
    est = _fitted(NEURAL["ae"], X)
    state = est.__getstate__()
    state["_net_state"] = {**state["_net_state"], "device": saved_device}
    loaded = AutoencoderTransformer.__new__(AutoencoderTransformer)
    loaded.__setstate__(state)
    assert loaded.net_.device == "cpu"
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def _skops_round_trip(est):
    data = sio.dumps(est)
    return sio.loads(data, trusted=sio.get_untrusted_types(data=data))


@pytest.mark.parametrize("change", [
    dict(sparsity=0.2), dict(hidden_layer_sizes=(7,)),
], ids=["sparsity", "hidden_layer_sizes"])
@pytest.mark.parametrize("round_trip", [
    lambda est: pickle.loads(pickle.dumps(est)), copy.deepcopy, _skops_round_trip,
], ids=["pickle", "deepcopy", "skops"])
def test_set_params_after_fit_keeps_the_model_loadable(X, change, round_trip):
    # The net is rebuilt on load from the structural parameters it was
    # fitted with, not the current ones: set_params(sparsity=0.2) after
    # fit (the sparse module has an extra buffer) used to save a file that
    # could not be loaded (RuntimeError: missing keys), and deepcopy failed.
    est = _fitted(lambda: AutoencoderTransformer(n_components=4, max_iter=2,
                                                 random_state=0), X)
    codes = est.transform(X)
    est.set_params(**change)
    loaded = round_trip(est)
    np.testing.assert_array_equal(loaded.transform(X), codes)
    assert loaded.get_params()[next(iter(change))] == next(iter(change.values()))
    # partial_fit still refuses the changed structure; fit builds the new one.
    with pytest.raises(ValueError, match=next(iter(change))):
        loaded.partial_fit(X)
    _fitted(lambda: loaded, X)
    assert loaded.transform(X).shape == codes.shape
