"""PretrainedCNNFeatures under faults: failed fits, divergence, Ctrl-C, bad
parameters after fit, bad inputs and ambiguous layouts (issue 14)."""

import pathlib
import pickle
import re

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


# --------------------------------------- issue 21: the last bad vision inputs
class _NotWeights:
    """A Python object in a checkpoint (module level, so that it pickles)."""


def rgb_cnn(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(4, 2))


@pytest.fixture(scope="module")
def rgb():
    """Three 20 x 30 uint8 RGB images, and the first one as a PNG file."""
    return np.random.RandomState(0).randint(0, 256, (3, 20, 30, 3), np.uint8)


@pytest.fixture
def png(tmp_path, rgb):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(rgb[0]).save(path)
    return str(path)


@pytest.mark.parametrize("pooling", ["max", "cls", None])
def test_pooling_of_vectors_at_layer_none_is_refused_not_ignored(rgb, pooling):
    # With layer=None a ResNet's features are its classifier's input, already
    # average-pooled by the network: pooling="max", "cls" and None returned
    # exactly the "avg" features, silently.
    features = _resnet18(pooling=pooling)
    with pytest.raises(ValueError, match=rf"pooling={pooling!r} would have no "
                       r"effect: with layer=None.*already one vector per image "
                       r"\(shape \(1, 512\)\).*pooling='avg'.*layer="):
        features.fit(rgb)
    assert not hasattr(features, "model_")
    # A refit that raises leaves the fitted estimator as it was.
    fitted = _resnet18().fit(rgb)
    before = _fitted_state(fitted)
    with pytest.raises(ValueError, match="no effect"):
        fitted.set_params(pooling=pooling).fit(rgb)
    _assert_same_state(before, _fitted_state(fitted))
    # The same pooling on a layer with maps applies.
    if pooling == "max":
        maps = _resnet18(layer="layer4").fit(rgb).feature_maps(rgb)
        np.testing.assert_allclose(
            _resnet18(layer="layer4", pooling="max").fit(rgb).transform(rgb),
            maps.max(axis=(2, 3)), rtol=1e-6)


def test_pooling_cls_on_feature_maps_says_they_are_maps(rgb):
    # "shape (1, 512, 2, 2) (not (N, C, H, W) maps)": the shape quoted was
    # exactly (N, C, H, W).
    with pytest.raises(ValueError) as info:
        _resnet18(layer="layer4", pooling="cls").fit(rgb)
    message = str(info.value)
    assert "not (N, C, H, W)" not in message
    assert re.search(r"shape \(1, 512, 1, 1\): \(N, C, H, W\) maps.*pooling='cls' "
                     r"takes a vision transformer's class token.*pooling='avg', "
                     r"'max' or None", message), message


@pytest.mark.parametrize("image_size", [1, (1, 1)])
def test_image_size_below_two_pixels_names_the_minimum(rgb, png, image_size):
    # torchvision's uint8 resize of an RGB image to 1 x 1 raised torch's
    # "INTERNAL ASSERT FAILED ... please report a bug to PyTorch".
    features = tiny(rgb_cnn(), image_size=image_size)
    with pytest.raises(ValueError, match=r"image_size.*(at least 2|\[2, inf\))"):
        features.fit([png])
    assert not hasattr(features, "model_")
    assert tiny(rgb_cnn(), image_size=2).fit([png]).transform([png]).shape == (1, 4)


def test_extract_image_size_below_two_is_a_usage_error(png, tmp_path, capsys):
    from sklearn_replearn._extract import main

    with pytest.raises(SystemExit) as info:
        main([png, "--weights", "none", "--image-size", "1", "--quiet",
              "--out", str(tmp_path / "f.npy")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--image-size" in err and "at least 2" in err, err
    assert "INTERNAL ASSERT" not in err


@pytest.mark.parametrize("shape", [(0, 0, 3), (5, 0, 3), (0, 7)])
def test_an_image_without_pixels_is_named(rgb, png, shape):
    # torchvision's resize divided by the zero side: ZeroDivisionError.
    from PIL import Image

    features = tiny(rgb_cnn()).fit(rgb)
    height, width = shape[:2]
    size = rf"{height} x {width} pixels"
    empty = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match=rf"X\[2\] has {size}.*at least one pixel"):
        features.transform([png, rgb[1], empty])
    with pytest.raises(ValueError, match=rf"X\[1\] has {size}"):
        features.transform([png, Image.new("L", (width, height))])
    with pytest.raises(ValueError, match=rf"X holds images of {size}"):
        features.transform(np.zeros((2, *shape), np.uint8))


def test_a_file_that_is_not_a_state_dict_is_not_called_an_unsafe_pickle(
        tmp_path, rgb):
    # A text file, random bytes or an HTML error page saved as .pth were
    # "a pickle holding Python objects ... could run arbitrary code".
    contents = {"notes.pth": b"hello world\n", "table.pth": b"a,b\n1,2\n",
                "page.pth": b"<html><body>404 Not Found</body></html>",
                "random.pth": np.random.RandomState(0).bytes(1000),
                "empty.pth": b""}
    for name, content in contents.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError) as info:
            tiny(rgb_cnn(), weights=str(path)).fit(rgb)
        message = str(info.value)
        assert "arbitrary code" not in message, message
        start = "it is empty" if not content else f"it starts with {content[:16]!r}"
        assert re.search(rf"{name}.*corrupt or not a torch.save file.*"
                         rf"{re.escape(start)}.*"
                         r"torch\.save\(model\.state_dict\(\), path\)",
                         message), message
    # Real pickles of Python objects keep the warning about code.
    state = rgb_cnn().state_dict()
    state["extra"] = _NotWeights()
    torch.save(state, tmp_path / "objects.pth")
    with open(tmp_path / "plain.pth", "wb") as handle:
        pickle.dump({"model": _NotWeights()}, handle)
    for name in ("objects.pth", "plain.pth"):
        with pytest.raises(ValueError, match="Refused to load.*arbitrary code"):
            tiny(rgb_cnn(), weights=str(tmp_path / name)).fit(rgb)


def test_tampered_skops_backbone_name_is_refused_in_our_words():
    import io
    import json
    import zipfile

    sio = pytest.importorskip("skops.io")
    X = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 3), np.uint8)
    data = sio.dumps(_resnet18().fit(X))
    trusted = sio.get_untrusted_types(data=data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    for tamper, match in [
            (lambda spec: spec["name"].update(content='"resnet_ultra"', __id__=1),
             r"backbone 'resnet_ultra', which is not a torchvision classification "
             r"model"),
            (lambda spec: spec["name"].update(content='"vgg11"', __id__=1),
             r"weights stored for the backbone 'vgg11' do not fit it")]:
        schema = json.loads(files["schema.json"])
        content = schema["content"]["content"]
        tamper(content["_rebuild_spec"]["content"])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, blob in files.items():
                archive.writestr(name, json.dumps(schema).encode()
                                 if name == "schema.json" else blob)
        with pytest.raises(ValueError, match=match) as info:
            sio.loads(buffer.getvalue(), trusted=trusted)
        assert "altered" in str(info.value)
        assert "Unknown model" not in str(info.value)


def test_one_path_bytes_paths_and_nested_lists_say_what_to_pass(rgb, png):
    # All got scikit-learn's "Expected 2D array ... Reshape your data", which
    # speaks of tables.
    features = tiny(rgb_cnn()).fit(rgb)
    expected = features.transform([png])
    for bad, error, match in [
            (png, ValueError,
             r"X is one path \('.*photo\.png'\).*list of paths, \[X\]"),
            (pathlib.Path(png), ValueError, r"X is one path.*\[X\]"),
            ([png.encode()], TypeError, r"X\[0\] is bytes.*os\.fsdecode"),
            (np.array([png.encode()]), TypeError, r"X\[0\] is bytes"),
            ([png, png.encode()], TypeError, r"X\[1\] is bytes"),
            ([rgb[:2]], ValueError,
             r"X\[0\] is an array of shape \(2, 20, 30, 3\): a batch"),
            (rgb[0].tolist(), ValueError, r"shape \(20, 30, 3\).*\[X\]")]:
        with pytest.raises(error, match=match) as info:
            features.transform(bad)
        message = str(info.value)
        assert "Expected 2D" not in message and "dim <= 2" not in message, message
    # What the messages suggest works.
    np.testing.assert_array_equal(features.transform([pathlib.Path(png)]), expected)
    np.testing.assert_array_equal(features.transform([rgb[0].tolist()]),
                                  features.transform(rgb[:1]))
    np.testing.assert_array_equal(features.transform(rgb.tolist()),
                                  features.transform(rgb))


def test_float_range_error_shows_the_values_that_are_out_of_range(rgb):
    # 1 + 1e-7 was shown as "floats in [0.5, 1] ... must be in [0, 1]".
    features = tiny(rgb_cnn(), normalize=True).fit(rgb)
    images = np.full((1, 8, 8, 3), 0.5)
    images[0, 0, 0, 0] = 1 + 1e-7
    with pytest.raises(ValueError, match=r"maximum 1\.0000001 is above 1.*"
                       r"np\.clip\(X, 0, 1\)"):
        features.transform(images)
    images = images.astype(np.float32)
    images[0, 0, 0, 0] = np.nextafter(np.float32(1), np.float32(2))
    with pytest.raises(ValueError, match=r"maximum 1\.0000001 is above 1"):
        features.transform(images)
    images[0, 0, 0, 0] = -1e-9
    with pytest.raises(ValueError, match=r"minimum -1e-09 is below 0"):
        features.transform(images)
    with pytest.raises(ValueError, match=r"X\[1\] holds floats in \[0\.5, 2\]"):
        features.transform([rgb[0], np.full((8, 8, 3), 0.5) + np.eye(8)[..., None]
                            * 1.5])


def test_a_reversed_view_of_images_gives_the_features_of_a_copy():
    # torch.from_numpy refuses negative strides; images[::-1] (or a flipped
    # channel order) is an ordinary numpy view a user passes without thinking.
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(5, 12, 12, 3), dtype=np.uint8)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    features = PretrainedCNNFeatures(backbone, weights=None, image_size=12,
                                     device="cpu", compile=False).fit(images)
    for view in (images[::-1], images[:, ::-1], images[..., ::-1]):
        np.testing.assert_array_equal(features.transform(view),
                                      features.transform(view.copy()))
