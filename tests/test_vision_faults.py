"""PretrainedCNNFeatures under faults: failed fits, divergence, Ctrl-C, bad
parameters after fit, bad inputs and ambiguous layouts (issue 14)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn.exceptions import TrainingDivergedError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images[:64] / 16.0, data.target[:64]


class _Interrupting(nn.Module):
    """A trainable conv block that presses Ctrl-C on its ``at``-th training step."""

    def __init__(self, at):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.at = at
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
        return self.conv(x)


def tiny_cnn(block=None, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
            block if block is not None else nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
        )


def tiny(backbone=None, **params):
    params = {"weights": None, "image_size": 8, "normalize": False,
              "random_state": 0, "device": "cpu", "batch_size": 32, **params}
    return PretrainedCNNFeatures(tiny_cnn() if backbone is None else backbone,
                                 **params)


def _fitted_state(estimator):
    """The fitted attributes, with the model's weights as numpy arrays."""
    state = {name: value for name, value in vars(estimator).items()
             if name.endswith("_") and not name.startswith("__")}
    state["model_"] = {name: tensor.detach().cpu().numpy().copy() for name, tensor
                       in estimator.model_.state_dict().items()}
    return state


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for name, value in before.items():
        if name == "model_":
            assert value.keys() == after[name].keys()
            for key in value:
                np.testing.assert_array_equal(value[key], after[name][key])
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, after[name])
        else:
            assert value == after[name], name


# ---------------------------------------------------------- failed refits
@pytest.mark.parametrize(
    "change, fit_args, match",
    [
        ({}, "short_y", "one label per image"),
        ({"layer": "no_such_layer"}, "y", "layer='no_such_layer'"),
        ({"fine_tune_layers": 9}, "y", "fine_tune_layers=9"),
        ({"normalize": (1, 2)}, "y", r"normalize must be .*\(mean, std\)"),
        ({"weights": "missing.pth"}, "y", "not an existing file"),
        ({"fine_tune_layers": 0, "image_shape": (1, 8, 8)}, "flat", "image_shape"),
    ],
    ids=["bad-y", "bad-layer", "too-many-blocks", "bad-normalize", "bad-weights",
         "bad-rows"],
)
def test_failed_refit_leaves_the_fine_tuned_estimator_as_it_was(digits, change,
                                                               fit_args, match):
    X, y = digits
    features = tiny(fine_tune_layers=1, max_iter=2, learning_rate=1e-2).fit(X, y)
    expected = features.transform(X)
    before = _fitted_state(features)
    args = {"short_y": (X, y[:5]), "y": (X, y),
            "flat": (X.reshape(64, -1)[:, :10], y)}[fit_args]
    params = features.get_params()
    with pytest.raises((ValueError, TypeError), match=match):
        features.set_params(**change).fit(*args)
    _assert_same_state(before, _fitted_state(features))
    features.set_params(**params)
    np.testing.assert_array_equal(features.transform(X), expected)


def test_failed_first_fit_leaves_the_estimator_unfitted(digits):
    X, y = digits
    features = tiny(layer="no_such_layer")
    with pytest.raises(ValueError, match="no_such_layer"):
        features.fit(X)
    assert not [name for name in vars(features) if name.endswith("_")]


# -------------------------------------------------------------- divergence
def test_fine_tuning_at_a_huge_learning_rate_stops_with_a_clear_error(digits):
    X, y = digits
    features = tiny(fine_tune_layers=2, max_iter=5, learning_rate=1e6)
    with pytest.raises(TrainingDivergedError, match="learning_rate"):
        features.fit(X, y)
    assert not hasattr(features, "model_")  # the failed fit left nothing behind


# ------------------------------------------------------------------ Ctrl-C
@pytest.mark.parametrize("at, epochs", [(1, 0), (3, 1)],
                         ids=["first-batch", "second-epoch"])
def test_interrupted_fine_tuning_keeps_completed_epochs_and_a_usable_model(
        digits, at, epochs):
    X, y = digits  # 64 images, batch_size 32: 2 steps per epoch
    features = tiny(tiny_cnn(_Interrupting(at)), fine_tune_layers=1, max_iter=4,
                    learning_rate=1e-2)
    features.fit(X, y)
    assert features.n_iter_ == epochs == len(features.loss_curve_)
    assert features.fine_tuned_blocks_ == ["2"]
    X_new = features.transform(X)
    assert X_new.shape == (64, 8) and np.isfinite(X_new).all()
    assert not any(p.requires_grad for p in features.model_.parameters())


# --------------------------------------------- parameters checked after fit
@pytest.mark.parametrize(
    "params, match",
    [({"batch_size": 0}, "batch_size"), ({"num_workers": -1}, "num_workers"),
     ({"pooling": "median"}, "pooling"), ({"device": 3}, "device")],
)
def test_parameters_set_after_fit_are_checked_where_they_are_used(digits, params,
                                                                  match):
    X, _ = digits
    features = tiny(layer="2").fit(X)
    features.set_params(**params)
    with pytest.raises(ValueError, match=match):
        features.transform(X)
    with pytest.raises(ValueError, match=match):
        features.feature_maps(X)


# ------------------------------------------------------------- bad inputs
def test_normalize_of_the_wrong_form_names_the_expected_one(digits):
    X, _ = digits
    for normalize in [(1, 2), ((0.5,), (0.0,)), ((0.5, 0.5), (1.0,)), ("a", "b"),
                      (), ((0.5,), (float("nan"),))]:
        with pytest.raises(ValueError, match=r"normalize must be True, False or "
                                             r"\(mean, std\)"):
            tiny(normalize=normalize).fit(X)
    tiny(normalize=((0.5,), (0.25,))).fit(X)  # one channel: fine


@pytest.mark.parametrize("empty", [[], (), np.array([]), np.zeros((0, 64))],
                         ids=["list", "tuple", "1d-array", "rows"])
def test_no_images_is_said_as_such(digits, empty):
    X, _ = digits
    features = tiny().fit(X)
    with pytest.raises(ValueError, match="no images"):
        features.transform(empty)
    with pytest.raises(ValueError, match="no images"):
        tiny().fit(empty)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_ambiguous_channel_layout_asks_for_image_shape(dtype):
    rgb_first = np.random.RandomState(0).randint(0, 256, (2, 3, 16, 4))
    rgb_first = rgb_first.astype(dtype) / (255 if dtype == np.float32 else 1)
    rgb_first = rgb_first.astype(dtype)
    features = PretrainedCNNFeatures("resnet18", weights=None, image_size=16,
                                     random_state=0, device="cpu")
    with pytest.raises(ValueError, match=r"ambiguous.*image_shape=\(C, H, W\).*"
                                         r"\(3, 16, 4\).*\(4, 3, 16\)"):
        features.fit(rgb_first)
    with pytest.raises(ValueError, match="ambiguous"):
        features.fit(list(rgb_first))  # per-image arrays too
    # image_shape settles it: both readings give their own, consistent features.
    first = features.set_params(image_shape=(3, 16, 4)).fit(rgb_first)
    nhwc = np.ascontiguousarray(rgb_first.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(first.transform(rgb_first),
                                  first.set_params(image_shape=None).transform(nhwc))
    np.testing.assert_array_equal(
        first.set_params(image_shape=(3, 16, 4)).transform(list(rgb_first)),
        first.transform(rgb_first))


# ------------------------------------------------------------ skops format
def _resnet18(**params):
    params = {"weights": None, "image_size": 32, "random_state": 0,
              "batch_size": 4, "device": "cpu", **params}
    return PretrainedCNNFeatures("resnet18", **params)


def _ours(types):
    return all(name.startswith("sklearn_replearn.") for name in types)


@pytest.mark.parametrize(
    "params", [{}, {"layer": "layer3", "pooling": "max"},
               {"fine_tune_layers": 1, "max_iter": 1, "learning_rate": 1e-3}],
    ids=["frozen", "layer", "fine-tuned"])
def test_skops_round_trip_trusts_only_our_classes(params):
    sio = pytest.importorskip("skops.io")
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (6, 40, 30, 3), np.uint8)
    features = _resnet18(**params).fit(X, np.repeat([0, 1, 2], 2))
    expected = features.transform(X)
    data = sio.dumps(features)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted and _ours(untrusted), untrusted
    rng_before = torch.random.get_rng_state()
    restored = sio.loads(data, trusted=untrusted)
    # Rebuilding the backbone initialises weights: not from the global RNG.
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    np.testing.assert_array_equal(restored.transform(X), expected)
    assert restored.get_params().keys() == features.get_params().keys()
    assert restored.preprocessing_ == features.preprocessing_
    assert not any(p.requires_grad for p in restored.model_.parameters())
    # Unfitted estimators round-trip too.
    unfitted = sio.loads(sio.dumps(_resnet18(**params)), trusted=untrusted)
    np.testing.assert_array_equal(unfitted.fit(X, np.repeat([0, 1, 2], 2))
                                  .transform(X), expected)


def test_tampered_skops_file_is_refused_unless_trusted():
    import io
    import json
    import zipfile

    sio = pytest.importorskip("skops.io")
    X = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 3), np.uint8)
    data = sio.dumps(_resnet18().fit(X))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(files["schema.json"])
    schema["content"]["content"]["head_"] = {
        "__class__": "eval", "__module__": "builtins", "__loader__": "TypeNode",
        "__id__": 1}
    files["schema.json"] = json.dumps(schema).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    tampered = buffer.getvalue()
    assert "builtins.eval" in sio.get_untrusted_types(data=tampered)
    ours = [name for name in sio.get_untrusted_types(data=data)]
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.loads(tampered, trusted=ours)


def test_skops_refuses_a_user_module_at_dump_time_and_pickle_keeps_it(digits):
    import pickle

    sio = pytest.importorskip("skops.io")
    X, _ = digits
    features = tiny().fit(X)
    with pytest.raises(TypeError, match="skops.*trusting torch's types.*pickle"):
        sio.dumps(features)
    with pytest.raises(TypeError, match="skops"):
        sio.dumps(tiny())
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(features)).transform(X),
                                  features.transform(X))
