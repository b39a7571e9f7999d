"""PretrainedCNNFeatures on inputs its authors had not tried: one-channel
user modules, parameters changed after fit, a last fine-tuning batch of one
image, a grey (H, W, 1) image, the extract command's file modes. Each test
states the promised behaviour and failed before its fix (an independent
review's findings, 2026-11-27).
"""

import os
import stat

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_sample_image
from torch import nn

from sklearn_replearn import PretrainedCNNFeatures

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return (data.images[:9] / 16.0).astype(np.float32), data.target[:9]


@pytest.fixture(scope="module")
def photos():
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


def test_one_channel_module_with_default_normalize_transforms(digits):
    # An MNIST-style net (first conv takes 1 channel) with the default
    # normalize=True: fit succeeded, transform raised torch's RuntimeError
    # ("expected input ... to have 1 channels, but got 3"): the 3-value
    # ImageNet mean/std broadcast the gray batch to 3 channels.
    X, _ = digits
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


def test_normalize_with_wrong_channel_count_is_a_clear_error(photos):
    # normalize=(mean, std) with 2 values for a 3-channel backbone: fit passed,
    # transform raised torch's RuntimeError ("size of tensor a (3) must match
    # the size of tensor b (2)").
    features = PretrainedCNNFeatures(
        _net(3), weights=None, image_size=16,
        normalize=((0.5, 0.5), (0.25, 0.25)))
    with pytest.raises(ValueError, match="normalize"):
        features.fit(photos).transform(photos)


def test_set_params_layer_none_after_fit_does_not_return_logits(photos):
    # Fit with a layer keeps the classifier; set_params(layer=None) then made
    # transform return the classifier's 3 logits (not the 4 penultimate
    # features) while get_feature_names_out still said 4: silently wrong.
    features = PretrainedCNNFeatures(_net(3), weights=None, image_size=16,
                                     layer="3", autocast=False).fit(photos)
    expected = features.transform(photos)
    features.set_params(layer=None)
    # transform computes what fit set up; the new layer takes effect at the
    # next fit, as any parameter does.
    out = features.transform(photos)
    assert out.shape[1] == len(features.get_feature_names_out())
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(features.feature_maps(photos),
                                  features.feature_maps(photos, layer="3"))
    assert features.fit(photos).transform(photos).shape[1] == 4


def test_set_params_pooling_after_fit_keeps_feature_names_consistent(photos):
    # set_params(pooling=None) after fit: transform gave 1024 columns while
    # get_feature_names_out gave 256, so set_output("pandas") crashed.
    pytest.importorskip("pandas")
    features = PretrainedCNNFeatures(
        "resnet18", weights=None, random_state=0, image_size=32,
        layer="layer3").fit(photos)
    expected = features.transform(photos)
    features.set_params(pooling=None).set_output(transform="pandas")
    out = features.transform(photos)
    assert out.shape[1] == len(features.get_feature_names_out()) == 256
    np.testing.assert_array_equal(out.to_numpy(), expected)


def test_set_params_normalize_after_fit_does_not_accept_unnormalised_floats(photos):
    # set_params(normalize=False) after fit turned the [0, 1] range check off,
    # but the fitted ImageNet normalisation still applied: floats in [0, 255]
    # were accepted and gave features ~100x off, silently.
    features = PretrainedCNNFeatures(_net(3), weights=None, image_size=16,
                                     autocast=False).fit(photos)
    features.set_params(normalize=False)
    floats = photos.astype(np.float32)  # 0..255
    # Still checked as the fitted normalize=True requires.
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        features.transform(floats)


def test_fine_tuning_with_a_last_batch_of_one_image(photos):
    # CIFAR-sized images: resnet18's layer4 maps are 1x1 at 32x32, and the
    # trained block's BatchNorm got a last batch of one image (5 images,
    # batch_size=4): torch's "Expected more than 1 value per channel when
    # training" escaped fit.
    pytest.importorskip("skorch")
    y = np.array(["cat", "dog", "cat", "dog", "cat"])
    features = PretrainedCNNFeatures(
        "resnet18", weights=None, random_state=0, image_size=32,
        fine_tune_layers=1, max_iter=1, batch_size=4)
    features.fit(photos[:5], y)
    assert features.n_iter_ == 1 and np.isfinite(features.loss_curve_).all()


def test_single_grayscale_image_with_channel_axis_is_not_read_as_many(digits):
    # One (H, W, 1) grayscale image (as from Keras/OpenCV) was silently read
    # as H grayscale images W x 1 pixels wide: 8 rows of features for one
    # image. (H, W, 3) gives a clear error; (H, W, 1) must not be guessed
    # either.
    X, _ = digits
    features = PretrainedCNNFeatures(_net(3), weights=None, image_size=8).fit(X)
    one = X[0][:, :, np.newaxis]  # (8, 8, 1)
    try:
        out = features.transform(one)
    except ValueError:
        return
    assert out.shape[0] == 1, f"one image gave {out.shape[0]} rows"


def test_extract_output_files_follow_umask(tmp_path, photos):
    # extract wrote its outputs through tempfile.mkstemp, which creates
    # 0600 files, and renamed them: features.npy was unreadable by the group
    # and others whatever the umask (022 here gave 0600, not 0644).
    from PIL import Image

    from sklearn_replearn._extract import main

    image = tmp_path / "a.png"
    Image.fromarray(photos[0]).save(image)
    out = tmp_path / "features.npy"
    assert main([str(image), "--weights", "none", "--random-state", "0",
                 "--image-size", "32", "--quiet", "--out", str(out)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    for path in (out, tmp_path / "features.paths.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
