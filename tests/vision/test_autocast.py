"""PretrainedCNNFeatures in bfloat16 on CPUs: agreement with float32, accuracy,
batch invariance, the detection and float32 fine-tuning.

``SKLEARN_REPLEARN_CPU_BF16=1`` forces bfloat16 so that these tests run on
every CPU (emulated, slower, where the CPU lacks it: the numbers are the same).
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_sample_images
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn._utils import _precision as _autocast
from tests.vision.test_estimator import _shifted, _train_digit_cnn, small_cnn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def bf16(monkeypatch):
    monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "1")


@pytest.fixture(scope="module")
def images():
    photos = np.stack(load_sample_images().images)
    rng = np.random.RandomState(0)
    noise = rng.randint(0, 256, (4, *photos.shape[1:]), np.uint8)
    return np.concatenate([photos, noise])


def _resnet18(**params):
    params = {"weights": None, "image_size": 64, "random_state": 0,
              "batch_size": 4, "device": "cpu", **params}
    return PretrainedCNNFeatures("resnet18", **params)


def test_autocast_dtype_follows_the_device_the_flag_and_the_cpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _autocast.autocast_dtype(cuda, True) is torch.float16
    assert _autocast.autocast_dtype(cuda, False) is None
    assert _autocast.autocast_dtype(torch.device("mps"), True) is None
    monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "1")
    assert _autocast.autocast_dtype(cpu, True) is torch.bfloat16
    assert _autocast.autocast_dtype(cpu, False) is None
    monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "0")
    assert _autocast.autocast_dtype(cpu, True) is None
    # Without the override: the CPU's flags decide (no flag, no bfloat16),
    # whichever CPU runs this. AVX512-BF16 (AMD Zen4, Intel Cooper Lake) and
    # AMX-BF16 (Intel Sapphire Rapids and later) each suffice on their own;
    # AVX512 without its BF16 extension does not.
    monkeypatch.delenv("SKLEARN_REPLEARN_CPU_BF16")
    for flags in ({"avx2"}, {"avx2", "avx512f", "avx512bw"}):
        monkeypatch.setattr(_autocast, "_cpu_flags", lambda: frozenset(flags))
        assert _autocast.autocast_dtype(cpu, True) is None, flags
        assert _autocast.cpu_has_native_bfloat16() is False, flags
    for flags in ({"avx512f", "avx512_bf16"}, {"avx512f", "amx_tile", "amx_bf16"},
                  {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}):
        monkeypatch.setattr(_autocast, "_cpu_flags", lambda: frozenset(flags))
        native = torch.backends.mkldnn.is_available()
        assert _autocast.cpu_has_native_bfloat16() is native, flags
        assert _autocast.autocast_dtype(cpu, True) is (
            torch.bfloat16 if native else None), flags


@pytest.mark.slow
def test_bfloat16_features_agree_with_float32(bf16, images):
    fp32 = _resnet18(autocast=False).fit(images).transform(images)
    model = _resnet18().fit(images)
    seen = []
    handle = model.model_.fc.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].dtype))
    features = model.transform(images)
    handle.remove()
    assert features.dtype == np.float32
    cosine = (features * fp32).sum(1) / (
        np.linalg.norm(features, axis=1) * np.linalg.norm(fp32, axis=1))
    # Measured: >= 0.99998 per image (resnet18, random weights, 64 x 64).
    assert cosine.min() >= 0.999, cosine
    assert not np.array_equal(features, fp32)  # bfloat16 did run
    # float64 input still gives float64 features.
    assert model.transform(images.astype(np.float64) / 255).dtype == np.float64


@pytest.mark.slow
def test_bfloat16_one_image_alone_equals_the_same_image_in_a_batch(bf16, images):
    features = _resnet18().fit(images)
    together = features.transform(images)
    for index in range(len(images)):
        np.testing.assert_array_equal(features.transform(images[index:index + 1])[0],
                                      together[index])


@pytest.mark.slow
def test_bfloat16_transfer_accuracy_matches_float32(bf16):
    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target
    source = labels < 5
    cnn = _train_digit_cnn(images[source], labels[source])
    X = _shifted(images[~source], np.random.RandomState(1))
    y = labels[~source]
    train, test = train_test_split(np.arange(len(y)), train_size=100, stratify=y,
                                   random_state=0)
    accuracy = {}
    for autocast in (False, True):
        pipe = Pipeline([
            ("features", PretrainedCNNFeatures(cnn, weights=None, image_size=12,
                                               normalize=False, batch_size=256,
                                               autocast=autocast)),
            ("classifier", LogisticRegression(max_iter=5000)),
        ]).fit(X[train], y[train])
        accuracy[autocast] = pipe.score(X[test], y[test])
    # Measured: the same accuracy (0.76) in both precisions.
    assert abs(accuracy[True] - accuracy[False]) <= 0.01, accuracy
    assert accuracy[True] > 0.6, accuracy


def test_fine_tuning_trains_in_float32_whatever_autocast(bf16):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (12, 16, 16, 3), np.uint8)
    y = np.arange(12) % 3
    curves = [
        PretrainedCNNFeatures(small_cnn(), weights=None, image_size=16,
                              fine_tune_layers=1, max_iter=2, batch_size=4,
                              autocast=autocast, random_state=0, device="cpu")
        .fit(X, y).loss_curve_
        for autocast in (False, True)
    ]
    assert curves[0] == curves[1]
