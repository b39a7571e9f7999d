"""PretrainedCNNFeatures: widths, exactness, weights loading, transfer, errors."""

import os
import pathlib
import pickle
import re
import stat
import sys

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import load_digits, load_sample_image, load_sample_images
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from torch import nn

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn._extract import main as extract_main
from sklearn_replearn._extract import read_path_list
from sklearn_replearn.exceptions import TrainingDivergedError
from sklearn_replearn.vision.backbones import _download as download

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photos():
    """sklearn's two sample photos (427 x 640 RGB JPEGs) and their file paths."""
    data = load_sample_images()
    return np.stack(data.images), list(data.filenames)


def small_cnn(in_channels=3, seed=0):
    with torch.random.fork_rng():  # seeded, leaving the global RNG alone
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 16), nn.ReLU(),
            nn.Linear(16, 3),
        )


def resnet18(**params):
    # float32 (autocast=False): these tests compare with float32 references;
    # bfloat16 on CPUs that have it is tested in tests/vision/test_autocast.py.
    params = {"weights": None, "image_size": 64, "random_state": 0,
              "batch_size": 4, "device": "cpu", "autocast": False, **params}
    return PretrainedCNNFeatures("resnet18", **params)


# ------------------------------------------------------------------ widths
@pytest.mark.parametrize(
    "backbone, size, width",
    [("resnet18", 32, 512), ("vgg16", 32, 4096), ("densenet121", 32, 1024)],
)
@pytest.mark.slow
def test_documented_feature_widths(backbone, size, width):
    images = np.random.RandomState(0).randint(0, 256, (2, 40, 50, 3), np.uint8)
    features = PretrainedCNNFeatures(backbone, weights=None, image_size=size,
                                     batch_size=2, random_state=0, device="cpu")
    X_new = features.fit_transform(images)
    assert X_new.shape == (2, width)
    assert X_new.dtype == np.float32
    assert np.isfinite(X_new).all()
    assert features.get_feature_names_out()[0] == "pretrainedcnnfeatures0"


@pytest.mark.slow
def test_chosen_layer_width_pooling_and_feature_maps(photos):
    X, _ = photos
    avg = resnet18(layer="layer3").fit(X)
    maps = avg.feature_maps(X)
    assert maps.shape == (2, 256, 4, 4)  # 64 px / stride 16
    np.testing.assert_allclose(avg.transform(X), maps.mean(axis=(2, 3)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(resnet18(layer="layer3", pooling="max").fit(X)
                                  .transform(X), maps.max(axis=(2, 3)))
    flat = resnet18(layer="layer3", pooling=None).fit(X).transform(X)
    assert flat.shape == (2, 256 * 4 * 4)
    np.testing.assert_array_equal(flat, maps.reshape(2, -1))
    # A node name inside a block, and feature_maps of another layer.
    assert resnet18(layer="layer2.1.relu_1").fit(X).transform(X).shape == (2, 128)
    assert avg.feature_maps(X, layer="layer1").shape == (2, 64, 16, 16)


@pytest.mark.slow
def test_default_features_are_the_classifier_input():
    """The penultimate features equal torchvision's model with fc = Identity."""
    images = np.random.RandomState(1).randint(0, 256, (3, 64, 64, 3), np.uint8)
    features = resnet18(batch_size=3).fit(images)
    assert features.head_ == "fc"
    with torch.random.fork_rng():
        torch.manual_seed(features_seed(0))
        reference = torchvision.models.resnet18().eval()
    reference.fc = nn.Identity()
    transform = torchvision.transforms.v2.Compose([
        torchvision.transforms.v2.Resize(64, antialias=True),
        torchvision.transforms.v2.CenterCrop(64),
        torchvision.transforms.v2.ToDtype(torch.float32, scale=True),
        torchvision.transforms.v2.Normalize((0.485, 0.456, 0.406),
                                            (0.229, 0.224, 0.225)),
    ])
    batch = transform(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = reference(batch).numpy()
    np.testing.assert_allclose(features.transform(images), expected, rtol=1e-4,
                               atol=1e-5)


def features_seed(random_state):
    from sklearn_replearn._utils import seed_from_random_state

    return seed_from_random_state(random_state)


# ---------------------------------------------------------------- exactness
@pytest.mark.slow
def test_one_image_alone_equals_the_same_image_in_a_batch(photos):
    X, paths = photos
    rng = np.random.RandomState(0)
    batch = np.concatenate([X, rng.randint(0, 256, (3, *X.shape[1:]), np.uint8)])
    features = resnet18(batch_size=4).fit(batch)
    together = features.transform(batch)
    for index in range(len(batch)):
        alone = features.transform(batch[index:index + 1])
        np.testing.assert_array_equal(alone[0], together[index])
    # Float input and another neighbour set: still bit-identical.
    floats = batch.astype(np.float32) / 255
    np.testing.assert_array_equal(features.transform(floats[[4, 1]])[1],
                                  features.transform(floats[1:2])[0])


class _ShapeRecorder(nn.Module):
    """A backbone that records the batch shapes it is given."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.shapes = []

    def forward(self, batch):
        self.shapes.append(tuple(batch.shape))
        return self.module(batch)


def _six_images_through_a_recorder(**params):
    """Six 16 x 16 images and a fitted estimator (batches of 4) whose backbone
    records the batch shapes it is given from now on."""
    X = np.random.RandomState(0).randint(0, 256, (6, 16, 16, 3), np.uint8)
    features = PretrainedCNNFeatures(
        _ShapeRecorder(small_cnn()), weights=None, image_size=16, batch_size=4,
        device="cpu", autocast=False, **params).fit(X[:1])
    features.model_.shapes.clear()
    return X, features


@pytest.mark.parametrize("batch_invariant", [True, False])
def test_batch_invariant_pads_the_short_batch_or_runs_it_as_it_is(
        batch_invariant):
    X, features = _six_images_through_a_recorder(
        compile=False, batch_invariant=batch_invariant)
    out = features.transform(X)
    last = (4 if batch_invariant else 2, 3, 16, 16)
    assert features.model_.shapes == [(4, 3, 16, 16), last]
    # The same features either way, to float rounding (bit for bit when
    # padded: an image alone gets its features in a batch).
    reference = features.set_params(batch_invariant=True).transform(X)
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(features.transform(X[5:]), reference[5:])


def test_a_compiled_backbone_pads_even_without_batch_invariance(monkeypatch):
    """One static shape for the compiled module, whatever batch_invariant."""
    monkeypatch.setattr(torch, "compile", lambda module, **options: module)
    X, features = _six_images_through_a_recorder(compile=True,
                                                 batch_invariant=False)
    features.transform(X)
    assert features.model_.shapes == [(4, 3, 16, 16)] * 2


@pytest.mark.slow
def test_arrays_pil_images_and_paths_give_the_same_features(photos):
    X, paths = photos
    features = resnet18().fit(X)
    expected = features.transform(X)
    pil_images = [Image.open(path) for path in paths]
    np.testing.assert_array_equal(features.transform(pil_images), expected)
    np.testing.assert_array_equal(features.transform(paths), expected)
    workers = clone(features).set_params(num_workers=2).fit(X)
    np.testing.assert_array_equal(workers.transform(paths), expected)
    pd = pytest.importorskip("pandas")
    np.testing.assert_array_equal(features.transform(pd.Series(paths)), expected)
    np.testing.assert_array_equal(
        features.transform(pd.DataFrame({"path": paths})), expected)
    np.testing.assert_array_equal(features.transform(list(X)), expected)
    # Floats in [0, 1]: NCHW and NHWC layouts give identical features, close to
    # the uint8 ones (uint8 resizing rounds to whole intensity levels).
    nchw = X.transpose(0, 3, 1, 2).astype(np.float64) / 255
    as_float = features.transform(nchw)
    assert as_float.dtype == np.float64
    np.testing.assert_array_equal(as_float,
                                  features.transform(X.astype(np.float64) / 255))
    np.testing.assert_allclose(as_float, expected, atol=0.05)


@pytest.mark.slow
def test_mixed_sizes_grayscale_rgba_and_flat_rows(photos):
    X, _ = photos
    features = resnet18().fit(X)
    crop = np.ascontiguousarray(X[0, 100:300, 50:250])
    mixed = [X[1], crop, X[0]]
    out = features.transform(mixed)
    np.testing.assert_array_equal(out[1], features.transform(crop[np.newaxis])[0])
    np.testing.assert_array_equal(out[[0, 2]], features.transform(X[[1, 0]]))
    # Grayscale is replicated to RGB; alpha is dropped.
    gray = X[..., 1]
    np.testing.assert_array_equal(features.transform(gray),
                                  features.transform(np.repeat(gray[..., None], 3, 3)))
    rgba = np.concatenate([X, np.full((*X.shape[:3], 1), 7, np.uint8)], axis=3)
    np.testing.assert_array_equal(features.transform(rgba), features.transform(X))
    # Flat rows with image_shape (C, H, W) are the same images.
    small = X[:, ::8, ::8].transpose(0, 3, 1, 2).copy()
    flat = resnet18(image_shape=small.shape[1:]).fit(small.reshape(2, -1))
    assert flat.n_features_in_ == small[0].size
    np.testing.assert_array_equal(flat.transform(small.reshape(2, -1)),
                                  features.transform(small))


# ----------------------------------------------------------------- weights
def _seeded_resnet18_state():
    with torch.random.fork_rng():
        torch.manual_seed(123)
        return torchvision.models.resnet18().state_dict()


@pytest.mark.slow
def test_same_weights_by_cached_name_path_and_state_dict(photos, tmp_path,
                                                         monkeypatch):
    X, _ = photos
    state = _seeded_resnet18_state()
    file_name = os.path.basename(
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / file_name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(download, "_download_to", no_download)
    by_name = resnet18(weights="IMAGENET1K_V1").fit(X).transform(X)
    by_default = resnet18(weights="DEFAULT").fit(X).transform(X)
    by_path = resnet18(weights=str(checkpoints / file_name)).fit(X).transform(X)
    by_pathlike = resnet18(weights=checkpoints / file_name).fit(X).transform(X)
    by_state = resnet18(weights=state).fit(X).transform(X)
    for other in (by_default, by_path, by_pathlike, by_state):
        np.testing.assert_array_equal(other, by_name)
    random_init = resnet18(weights=None).fit(X).transform(X)
    assert not np.allclose(random_init, by_name)
    # A nested checkpoint {"state_dict": ...} loads the same weights.
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "checkpoint.pt")
    np.testing.assert_array_equal(
        resnet18(weights=tmp_path / "checkpoint.pt").fit(X).transform(X), by_name)


def test_named_weights_not_cached_is_a_clear_error_with_download_false(tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(download, "_download_to", no_download)
    images = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"resnet18-f37072fd\.pth.*hub.*checkpoints"
                                         r".*download=False"
                                         r".*weights='/path/to/resnet18-f37072fd"):
        PretrainedCNNFeatures("resnet18", download=False).fit(images)
    with pytest.raises(ValueError, match="'IMAGENET1K_V9' is not a weights name.*"
                                         "'IMAGENET1K_V1'"):
        PretrainedCNNFeatures("resnet18", weights="IMAGENET1K_V9").fit(images)
    with pytest.raises(ValueError, match="not an existing file"):
        PretrainedCNNFeatures("resnet18", weights=tmp_path / "nope.pth").fit(images)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_unsafe_pickle_file_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "code_ran"
    state = _seeded_resnet18_state()
    state["fc.extra"] = _Exploit(str(marker))
    unsafe = tmp_path / "unsafe.pth"
    torch.save(state, unsafe)
    images = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="Will not load.*arbitrary code"):
        resnet18(weights=unsafe).fit(images)
    # The same file in the hub cache, asked for by name.
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    os.replace(unsafe, checkpoints / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="Will not load"):
        resnet18(weights="DEFAULT").fit(images)
    assert not marker.exists()


def test_weights_that_do_not_fit_and_user_module_weights(tmp_path):
    images = np.zeros((2, 16, 16, 3), np.uint8)
    cnn = small_cnn()
    with pytest.raises(ValueError, match="does not fit the backbone"):
        PretrainedCNNFeatures(cnn, weights=_seeded_resnet18_state()).fit(images)
    with pytest.raises(ValueError, match="your own module"):
        PretrainedCNNFeatures(cnn, weights="DEFAULT").fit(images)
    # A user module's weights from a file replace its current ones.
    other = small_cnn(seed=5)
    torch.save(other.state_dict(), tmp_path / "cnn.pt")
    loaded = PretrainedCNNFeatures(cnn, weights=tmp_path / "cnn.pt",
                                   image_size=16).fit(images)
    same = PretrainedCNNFeatures(other, weights=None, image_size=16).fit(images)
    np.testing.assert_array_equal(loaded.transform(images), same.transform(images))
    assert not torch.equal(cnn[0].weight, other[0].weight)


# ---------------------------------------------------------------- transfer
def _shifted(images, rng, pad=2):
    """Digits pasted at random positions of a (8 + 2 pad)^2 canvas."""
    out = np.zeros((len(images), 8 + 2 * pad, 8 + 2 * pad))
    dy, dx = rng.randint(0, 2 * pad + 1, (2, len(images)))
    for i, image in enumerate(images):
        out[i, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] = image
    return out


def _train_digit_cnn(images, labels, epochs=15):
    """A small CNN trained (with random shifts) to tell digits 0-4 apart."""
    with torch.random.fork_rng():  # seeded, leaving the global RNG alone
        rng = np.random.RandomState(0)
        torch.manual_seed(0)
        cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(2),
            nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 5),
        )
        y = torch.as_tensor(labels)
        optimizer = torch.optim.Adam(cnn.parameters(), lr=3e-3)
        for _ in range(epochs):
            X = torch.tensor(_shifted(images, rng), dtype=torch.float32)[:, None]
            for rows in torch.randperm(len(X)).split(64):
                optimizer.zero_grad()
                nn.functional.cross_entropy(cnn(X[rows]), y[rows]).backward()
                optimizer.step()
        return cnn.eval()


@pytest.mark.slow
def test_transfer_from_digits_0_4_beats_raw_pixels_on_digits_5_9():
    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target
    source = labels < 5
    cnn = _train_digit_cnn(images[source], labels[source])
    X = _shifted(images[~source], np.random.RandomState(1))  # (N, 12, 12) gray
    y = labels[~source]
    train, test = train_test_split(np.arange(len(y)), train_size=100, stratify=y,
                                   random_state=0)
    transfer = Pipeline([
        ("features", PretrainedCNNFeatures(cnn, weights=None, image_size=12,
                                           normalize=False, batch_size=256)),
        ("classifier", LogisticRegression(max_iter=5000)),
    ]).fit(X[train], y[train])
    raw = LogisticRegression(max_iter=5000).fit(X[train].reshape(100, -1), y[train])
    transfer_accuracy = transfer.score(X[test], y[test])
    raw_accuracy = raw.score(X[test].reshape(len(test), -1), y[test])
    # Measured: 0.76 (CNN features) vs 0.37 (raw pixels).
    assert transfer_accuracy > raw_accuracy + 0.2, (transfer_accuracy, raw_accuracy)


# ----------------------------------------------------- frozen / fine-tuning
def test_frozen_transform_has_no_trainable_parameter_and_no_grad(photos):
    X, _ = photos
    features = resnet18().fit(X)
    seen = []

    def hook(module, inputs, output):
        # Every module run, including the batch-norm-folded copy of model_.
        if isinstance(output, torch.Tensor):
            seen.append((
                any(p.requires_grad for p in module.parameters()),
                torch.is_inference_mode_enabled(), output.requires_grad,
                module.training,
            ))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        features.transform(X)
    finally:
        handle.remove()
    assert len(seen) > 20 and all(state == (False, True, False, False)
                                  for state in seen)
    assert not any(p.requires_grad for p in features.model_.parameters())


def test_batch_norms_are_folded_for_inference(photos):
    X, _ = photos
    features = resnet18().fit(X)
    ran = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: ran.append(type(module)))
    try:
        folded = features.transform(X)
    finally:
        handle.remove()
    assert nn.Conv2d in ran and nn.BatchNorm2d not in ran
    # model_ itself keeps its batch norms (plots, pickles and fine-tuning see
    # the real layers), and running it directly gives the same features.
    assert any(isinstance(m, nn.BatchNorm2d) for m in features.model_.modules())
    unfolded = _unfolded_features(features, X)
    np.testing.assert_allclose(folded, unfolded, rtol=1e-4, atol=1e-5)


def _unfolded_features(features, X):
    """Features computed by ``model_`` itself (its batch norms not folded)."""
    preprocess = features._preprocessor()
    with torch.inference_mode():
        batch = preprocess.finish(preprocess.prepare(
            torch.from_numpy(X).permute(0, 3, 1, 2), "X"))
        return features._pool(features.model_(batch)).numpy()


class _DataDependent(nn.Module):
    """Symbolic tracing fails on the ``if``: the module runs unfolded."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return self.norm(self.conv(x))


class _TypeSwitch(_DataDependent):
    """Tracing silently takes the other branch (a proxy is not a Tensor)."""

    def forward(self, x):
        if isinstance(x, torch.Tensor):
            x = x * 2.0
        return self.norm(self.conv(x))


class _TiedConv(nn.Module):
    """One convolution called twice: folding its first use would change both."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.conv, self.norm = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        x = torch.relu(self.norm(self.conv(self.stem(x))))
        return self.conv(x)


@pytest.mark.parametrize("module_class", [_DataDependent, _TypeSwitch, _TiedConv])
def test_user_modules_that_cannot_be_folded_safely_give_their_own_features(
        photos, module_class):
    X, _ = photos
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = module_class()
    # Non-trivial batch-norm statistics, so that a wrong fold shows.
    module.norm.running_mean.uniform_(-1, 1)
    module.norm.running_var.uniform_(0.5, 2)
    user = PretrainedCNNFeatures(module, weights=None, image_size=16,
                                 autocast=False, random_state=0).fit(X)
    np.testing.assert_allclose(user.transform(X), _unfolded_features(user, X),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_features_follow_weights_changed_in_place_after_fit(photos):
    X, _ = photos
    features = resnet18().fit(X)
    before = features.transform(X)
    with torch.no_grad():
        features.model_.layer4[1].conv2.weight.mul_(0.5)
    after = features.transform(X)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, _unfolded_features(features, X), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.slow
def test_feature_cache_is_reused_kept_by_pickling_and_rebuilt_on_change(
        photos, monkeypatch):
    import sklearn_replearn.vision._feature_cache as pretrained

    X, _ = photos
    folds = []
    real_fold = pretrained.fold_batch_norms
    monkeypatch.setattr(pretrained, "fold_batch_norms",
                        lambda module, example=None: folds.append(1) or real_fold(
                            module, example=example))
    # "cpu:0" names the device the weights are on ("cpu") with an index.
    features = resnet18(device="cpu:0").fit(X)
    expected = features.transform(X)
    for _ in range(2):  # alternating layers reuses both cached modules
        features.transform(X)
        features.feature_maps(X, layer="layer3")
    assert len(folds) == 2
    # Pickling neither empties this estimator's cache nor moves its model.
    pickle.dumps(features)
    features.transform(X)
    assert len(folds) == 2
    # Replacing a layer (even one without weights) rebuilds the cache.
    features.model_.avgpool = nn.AdaptiveMaxPool2d(1)
    changed = features.transform(X)
    assert len(folds) == 3 and not np.allclose(changed, expected)
    np.testing.assert_allclose(changed, _unfolded_features(features, X), rtol=1e-4,
                               atol=1e-5)
    # So does set_params (pooling, layer, compile... all change the module).
    features.set_params(batch_size=2).transform(X)
    assert len(folds) == 4


def _state(module):
    # On the CPU: the fitted model may live on a GPU (device="auto").
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in
            module.state_dict().items()}


def test_fine_tuning_changes_only_the_last_k_blocks():
    digits = load_digits()
    X, y = digits.images[:120] / 16.0, digits.target[:120]
    cnn = small_cnn(in_channels=1)
    before = _state(cnn)
    features = PretrainedCNNFeatures(
        cnn, weights=None, image_size=8, normalize=False, fine_tune_layers=2,
        max_iter=3, learning_rate=1e-2, batch_size=32, random_state=0,
    ).fit(X, y)
    assert features.fine_tuned_blocks_ == ["4", "8"]  # conv2 and the hidden Linear
    assert features.n_iter_ == 3 and len(features.loss_curve_) == 3
    np.testing.assert_array_equal(features.classes_, np.arange(10))
    after = _state(features.model_)
    for name, value in before.items():
        tuned = name.split(".")[0] in ("4", "8")
        if name.startswith("10."):  # the classifier head, dropped for features
            assert name not in after
        elif tuned:
            assert not torch.equal(after[name], value), name
        else:  # includes BatchNorm running statistics of frozen blocks
            assert torch.equal(after[name], value), name
    # The user's module is untouched; features use the tuned backbone.
    for name, value in cnn.state_dict().items():
        assert torch.equal(value, before[name])
    frozen = PretrainedCNNFeatures(cnn, weights=None, image_size=8,
                                   normalize=False).fit(X)
    assert features.transform(X).shape == (120, 16)
    assert not np.allclose(features.transform(X), frozen.transform(X))
    assert not any(p.requires_grad for p in features.model_.parameters())


@pytest.mark.slow
def test_fine_tuning_a_resnet_block_keeps_the_rest_identical():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (16, 32, 32, 3), np.uint8)
    y = np.repeat(["cat", "dog"], 8)
    features = resnet18(image_size=32, fine_tune_layers=1, max_iter=2,
                        learning_rate=1e-3, batch_size=8).fit(X, y)
    assert features.fine_tuned_blocks_ == ["layer4.1"]
    reference = resnet18(image_size=32).fit(X).model_.state_dict()
    for name, value in features.model_.state_dict().items():
        if name.startswith("layer4.1.") and name.endswith(("weight", "bias")):
            assert not torch.equal(value, reference[name]), name
        elif not name.startswith("layer4.1."):
            assert torch.equal(value, reference[name]), name
    with pytest.raises(ValueError, match="fit\\(X, y\\)"):
        resnet18(fine_tune_layers=1).fit(X)
    with pytest.raises(ValueError, match="only 1 block"):
        PretrainedCNNFeatures(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(),
                                            nn.LazyLinear(2)), weights=None,
                              image_size=8, fine_tune_layers=3).fit(X, y)


# ------------------------------------------------------------ round trips
@pytest.mark.slow
def test_pickle_clone_and_pandas_output(photos):
    X, _ = photos
    features = resnet18().fit(X)
    expected = features.transform(X)
    restored = pickle.loads(pickle.dumps(features))
    np.testing.assert_array_equal(restored.transform(X), expected)
    np.testing.assert_array_equal(clone(features).fit(X).transform(X), expected)
    pytest.importorskip("pandas")
    frame = clone(features).set_output(transform="pandas").fit(X).transform(X)
    assert list(frame.columns[:2]) == ["pretrainedcnnfeatures0",
                                       "pretrainedcnnfeatures1"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_model_saved_for_a_missing_device_still_transforms(photos):
    """As if fit on a GPU and unpickled on a CPU-only machine."""
    X, _ = photos
    features = resnet18().fit(X)
    expected = features.transform(X)
    restored = pickle.loads(pickle.dumps(features.set_params(device="cuda")))
    with pytest.warns(UserWarning, match="Running on the CPU instead"):
        np.testing.assert_array_equal(restored.transform(X), expected)


def test_progress_bar_over_batches(photos, capsys):
    X, _ = photos
    resnet18(verbose=1, batch_size=1).fit(X).transform(X)
    assert "transform" in capsys.readouterr().err


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.zeros((2, 16, 16, 5), np.uint8), ValueError, r"shape \(2, 16, 16, 5\)"),
        ([np.zeros((16, 16, 3)), np.zeros((16, 16, 6))], ValueError,
         r"X\[1\] has shape \(16, 16, 6\)"),
        (np.zeros((2, 20)), ValueError, "image_shape"),
        (np.full((2, 8, 8, 3), 2.0), ValueError, r"floats in \[2, 2\].*\[0, 1\]"),
        (np.full((2, 8, 8, 3), np.nan), ValueError, "NaN"),
        (np.zeros((2, 8, 8, 3), np.int64) - 1, ValueError, r"integers in \[-1, -1\]"),
        (np.zeros((16, 16, 3), np.uint8), ValueError, r"X\[np.newaxis\]"),
        (["a.jpg"], ValueError, r"X\[0\] is the path 'a.jpg'.*not an existing"),
        ([np.zeros((8, 8, 3)), 5], TypeError, r"X\[1\] is a int"),
        (np.zeros((0, 8, 8, 3), np.uint8), ValueError, "no images"),
    ],
    ids=["5-channels", "item-6-channels", "flat-no-shape", "float-range", "nan",
         "negative-ints", "single-hwc-image", "missing-file", "bad-item", "empty"],
)
def test_bad_inputs_are_clear_errors(X, error, match):
    features = resnet18(image_size=8).fit(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(error, match=match):
        features.transform(X)


def test_wrong_image_shape_channels_and_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match=r"image_shape=\(3, 4, 4\) has 48 values.*"
                                         "20 columns"):
        resnet18(image_shape=(3, 4, 4)).fit(np.zeros((2, 20)))
    gray_model = PretrainedCNNFeatures(small_cnn(in_channels=1), weights=None,
                                       image_size=8)
    with pytest.raises(ValueError, match="3 channel.*takes 1"):
        gray_model.fit(np.zeros((2, 8, 8, 3), np.uint8))
    fitted = gray_model.fit(np.zeros((2, 8, 8), np.uint8))
    rgb_file = tmp_path / "rgb.png"
    Image.new("RGB", (8, 8)).save(rgb_file)
    with pytest.raises(ValueError, match=r"X\[0\] has 3 channel"):
        fitted.transform([rgb_file])
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a jpeg")
    good = tmp_path / "gray.png"
    Image.new("L", (8, 8)).save(good)
    for workers in (0, 2):
        fitted.set_params(num_workers=workers)
        with pytest.raises(ValueError, match=r"X\[1\]: cannot read .*notes\.jpg"):
            fitted.transform([good, not_an_image])


def test_unknown_backbone_and_layer_name_the_valid_ones():
    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="'resnet81'.*Did you mean 'resnet18'"):
        PretrainedCNNFeatures("resnet81", weights=None).fit(images)
    with pytest.raises(ValueError, match="layer='layer9'.*Valid layers.*layer4.1.add"):
        resnet18(layer="layer9").fit(images)
    with pytest.raises(ValueError, match="pooling=None"):
        PretrainedCNNFeatures(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(2)),
                              weights=None, image_size=8).fit(images)
    with pytest.raises(ValueError, match="needs a layer"):
        resnet18().fit(images).feature_maps(images)


# -------------------------------------------------------------- command line
@pytest.mark.slow
def test_extract_command_writes_the_estimators_features(photos, tmp_path, capsys):
    X, paths = photos
    torch.save(_seeded_resnet18_state(), tmp_path / "resnet18.pth")
    folder = tmp_path / "images"
    folder.mkdir()
    for index, path in enumerate(paths):
        os.symlink(path, folder / f"{index}_{os.path.basename(path)}")
    (folder / "readme.txt").write_text("not an image, skipped by the folder walk")
    out = tmp_path / "features.npy"
    extract_main([str(folder), "--backbone", "resnet18", "--weights",
                  str(tmp_path / "resnet18.pth"), "--image-size", "64",
                  "--batch-size", "2", "--out", str(out), "--device", "cpu"])
    # The command keeps the estimator's default autocast=True.
    expected = resnet18(weights=tmp_path / "resnet18.pth", batch_size=2,
                        autocast=True).fit(X).transform(X)
    np.testing.assert_array_equal(np.load(out), expected)
    listed = read_path_list(tmp_path / "features.paths.jsonl")
    assert [os.path.basename(p) for p in listed] == ["0_china.jpg", "1_flower.jpg"]
    csv = tmp_path / "features.csv"
    extract_main([*paths, "--backbone", "resnet18", "--weights",
                  str(tmp_path / "resnet18.pth"), "--image-size", "64",
                  "--layer", "layer3", "--out", str(csv), "--num-workers", "1",
                  "--device", "cpu"])
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("path,feature0,feature1")
    assert len(lines) == 3 and len(lines[1].split(",")) == 1 + 256
    assert "2 images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        extract_main([str(tmp_path / "missing.jpg"), "--out", str(out)])
    assert "missing.jpg" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_backbone_gives_the_same_features():
    """compile=True runs the backbone through torch.compile (slow to build once)."""
    from sklearn_replearn._utils import seeded
    from sklearn_replearn.vision._compile import CompiledOrEager

    with seeded(0):
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    X = np.random.RandomState(0).randint(0, 255, (6, 16, 16, 3)).astype(np.uint8)
    params = dict(weights=None, image_size=16, batch_size=4, device="cpu")
    eager = PretrainedCNNFeatures(net, **params).fit(X).transform(X)
    compiled = PretrainedCNNFeatures(net, compile=True, **params).fit(X)
    np.testing.assert_allclose(compiled.transform(X), eager, rtol=1e-5, atol=1e-6)
    assert any(isinstance(module, CompiledOrEager) and module.compiled is not None
               and type(module.compiled).__name__ == "OptimizedModule"
               for module in compiled._runtime.values())


# ---------------- one-channel modules, parameters set after fit, one-image batches
@pytest.fixture(scope="module")
def digit_images_9():
    data = load_digits()
    return (data.images[:9] / 16.0).astype(np.float32), data.target[:9]


@pytest.fixture(scope="module")
def crops():
    """Six 32x32 uint8 RGB crops of sklearn's china.jpg."""
    china = load_sample_image("china.jpg")
    return np.stack([china[r:r + 32, c:c + 32] for r in (0, 100, 200)
                     for c in (0, 300)])


def _net(in_channels, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(4, 3))


def test_one_channel_module_with_default_normalize_transforms(digit_images_9):
    # An MNIST-style net (first conv takes 1 channel) with the default
    # normalize=True: fit succeeded, transform raised torch's RuntimeError
    # ("expected input ... to have 1 channels, but got 3"): the 3-value
    # ImageNet mean/std broadcast the gray batch to 3 channels.
    X, _ = digit_images_9
    features = PretrainedCNNFeatures(_net(1), weights=None, image_size=8)
    try:
        features.fit(X)
    except ValueError as exc:  # a clear error at fit is acceptable too
        assert "normalize" in str(exc)
        return
    try:
        out = features.transform(X)
    except RuntimeError as exc:
        pytest.fail(f"transform raised a raw torch error after a successful fit: {exc}")
    assert out.shape == (len(X), 4) and np.isfinite(out).all()


def test_normalize_with_wrong_channel_count_is_a_clear_error(crops):
    # normalize=(mean, std) with 2 values for a 3-channel backbone: fit passed,
    # transform raised torch's RuntimeError ("size of tensor a (3) must match
    # the size of tensor b (2)").
    features = PretrainedCNNFeatures(
        _net(3), weights=None, image_size=16,
        normalize=((0.5, 0.5), (0.25, 0.25)))
    with pytest.raises(ValueError, match="normalize"):
        features.fit(crops).transform(crops)


def test_set_params_layer_none_after_fit_does_not_return_logits(crops):
    # Fit with a layer keeps the classifier; set_params(layer=None) then made
    # transform return the classifier's 3 logits (not the 4 penultimate
    # features) while get_feature_names_out still said 4: silently wrong.
    features = PretrainedCNNFeatures(_net(3), weights=None, image_size=16,
                                     layer="3", autocast=False).fit(crops)
    expected = features.transform(crops)
    features.set_params(layer=None)
    # transform computes what fit set up; the new layer takes effect at the
    # next fit, as any parameter does.
    out = features.transform(crops)
    assert out.shape[1] == len(features.get_feature_names_out())
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(features.feature_maps(crops),
                                  features.feature_maps(crops, layer="3"))
    assert features.fit(crops).transform(crops).shape[1] == 4


def test_set_params_pooling_after_fit_keeps_feature_names_consistent(crops):
    # set_params(pooling=None) after fit: transform gave 1024 columns while
    # get_feature_names_out gave 256, so set_output("pandas") crashed.
    pytest.importorskip("pandas")
    features = PretrainedCNNFeatures(
        "resnet18", weights=None, random_state=0, image_size=32,
        layer="layer3").fit(crops)
    expected = features.transform(crops)
    features.set_params(pooling=None).set_output(transform="pandas")
    out = features.transform(crops)
    assert out.shape[1] == len(features.get_feature_names_out()) == 256
    np.testing.assert_array_equal(out.to_numpy(), expected)


def test_set_params_normalize_after_fit_does_not_accept_unnormalised_floats(crops):
    # set_params(normalize=False) after fit turned the [0, 1] range check off,
    # but the fitted ImageNet normalisation still applied: floats in [0, 255]
    # were accepted and gave features ~100x off, silently.
    features = PretrainedCNNFeatures(_net(3), weights=None, image_size=16,
                                     autocast=False).fit(crops)
    features.set_params(normalize=False)
    floats = crops.astype(np.float32)  # 0..255
    # Still checked as the fitted normalize=True requires.
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        features.transform(floats)


def test_fine_tuning_with_a_last_batch_of_one_image(crops):
    # CIFAR-sized images: resnet18's layer4 maps are 1x1 at 32x32, and the
    # trained block's BatchNorm got a last batch of one image (5 images,
    # batch_size=4): torch's "Expected more than 1 value per channel when
    # training" escaped fit.
    pytest.importorskip("skorch")
    y = np.array(["cat", "dog", "cat", "dog", "cat"])
    features = PretrainedCNNFeatures(
        "resnet18", weights=None, random_state=0, image_size=32,
        fine_tune_layers=1, max_iter=1, batch_size=4)
    features.fit(crops[:5], y)
    assert features.n_iter_ == 1 and np.isfinite(features.loss_curve_).all()


def test_single_grayscale_image_with_channel_axis_is_not_read_as_many(digit_images_9):
    # One (H, W, 1) grayscale image (as from Keras/OpenCV) was silently read
    # as H grayscale images W x 1 pixels wide: 8 rows of features for one
    # image. (H, W, 3) gives a clear error; (H, W, 1) must not be guessed
    # either.
    X, _ = digit_images_9
    features = PretrainedCNNFeatures(_net(3), weights=None, image_size=8).fit(X)
    one = X[0][:, :, np.newaxis]  # (8, 8, 1)
    try:
        out = features.transform(one)
    except ValueError:
        return
    assert out.shape[0] == 1, f"one image gave {out.shape[0]} rows"


def test_extract_output_files_follow_umask(tmp_path, crops):
    # extract wrote its outputs through tempfile.mkstemp, which creates
    # 0600 files, and renamed them: features.npy was unreadable by the group
    # and others whatever the umask (022 here gave 0600, not 0644).
    from PIL import Image

    from sklearn_replearn._extract import main

    image = tmp_path / "a.png"
    Image.fromarray(crops[0]).save(image)
    out = tmp_path / "features.npy"
    assert main([str(image), "--weights", "none", "--random-state", "0",
                 "--image-size", "32", "--quiet", "--out", str(out)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    for path in (out, tmp_path / "features.paths.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


# ---------------- faults: failed fits, divergence, Ctrl-C, bad inputs, skops files
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        with pytest.raises(ValueError, match="Will not load.*arbitrary code"):
            tiny(rgb_cnn(), weights=str(tmp_path / name)).fit(rgb)


@pytest.mark.slow
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
