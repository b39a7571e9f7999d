"""Behaviour on a CUDA GPU: skipped where there is none (CI has none).

Each test compares the GPU result with the CPU one on real data, checks that
seeding makes GPU runs repeatable, and that a model fit on the GPU still
pickles, and transforms after unpickling on a machine without CUDA.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_sample_images
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def digits():
    return (load_digits().data / 16.0).astype(np.float32)


def _as_if_cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_autoencoder_trains_on_the_gpu_like_on_the_cpu(digits, monkeypatch):
    params = dict(n_components=8, max_iter=30, tol=None, random_state=0)
    gpu = AutoencoderTransformer(device="cuda", **params).fit(digits)
    cpu = AutoencoderTransformer(device="cpu", **params).fit(digits)
    assert next(gpu.module_.parameters()).is_cuda
    # Same seed, same data: the GPU run is repeatable and as good as the CPU's.
    again = AutoencoderTransformer(device="cuda", **params).fit(digits)
    np.testing.assert_allclose(gpu.transform(digits), again.transform(digits),
                               rtol=1e-4, atol=1e-5)
    assert -gpu.score(digits) < 1.1 * -cpu.score(digits)
    expected = gpu.transform(digits)
    assert isinstance(expected, np.ndarray) and expected.dtype == np.float32
    blob = pickle.dumps(gpu)
    _as_if_cpu_only(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skorch: CUDA missing, loading on CPU
        restored = pickle.loads(blob)
        np.testing.assert_allclose(restored.set_params(device="cpu").transform(digits),
                                   expected, rtol=1e-4, atol=1e-5)


def test_vae_on_the_gpu_scores_like_on_the_cpu_and_samples_repeatably(digits):
    params = dict(n_components=8, hidden_layer_sizes=(128,), likelihood="bernoulli",
                  max_iter=40, tol=None, random_state=0)
    gpu = VAETransformer(device="cuda", **params).fit(digits)
    cpu = VAETransformer(device="cpu", **params).fit(digits)
    # ELBO in nats per sample; the two runs draw different noise.
    assert abs(gpu.score(digits) - cpu.score(digits)) < 0.05 * abs(cpu.score(digits))
    first = gpu.sample(5, random_state=3)
    np.testing.assert_array_equal(first, gpu.sample(5, random_state=3))
    assert first.shape == (5, 64) and np.isfinite(first).all()


def test_pretrained_features_on_the_gpu_match_the_cpu():
    images = np.stack(load_sample_images().images)
    params = dict(weights=None, image_size=128, random_state=0, batch_size=2)
    gpu = PretrainedCNNFeatures("resnet18", device="cuda", **params).fit(images)
    cpu = PretrainedCNNFeatures("resnet18", device="cpu", **params).fit(images)
    on_gpu, on_cpu = gpu.transform(images), cpu.transform(images)
    # float16 autocast on the GPU: close, not equal.
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0.05, atol=0.05 * np.abs(
        on_cpu).max())
    assert np.corrcoef(on_gpu.ravel(), on_cpu.ravel())[0, 1] > 0.999
    # Batch norms are folded on the GPU too: the check of the folded network
    # tolerates TF32 convolutions (cuDNN's default), which round to ~1e-3.
    assert isinstance(gpu._feature_module(torch.device("cuda")), torch.fx.GraphModule)
    # One image alone gives the same vector as in the batch, on the GPU too.
    np.testing.assert_array_equal(gpu.transform(images[1:]), on_gpu[1:])
    # Arrays are resized on the GPU, files by the CPU loader: close, not equal.
    from_files = gpu.transform(list(load_sample_images().filenames))
    np.testing.assert_allclose(from_files, on_gpu, rtol=0.05,
                               atol=0.05 * np.abs(on_gpu).max())


def test_dictionary_learner_on_the_gpu_matches_the_cpu(digits, monkeypatch):
    params = dict(n_components=32, alpha=0.5, max_iter=5, tol=None, random_state=0)
    gpu = DictionaryLearner(device="cuda", **params).fit(digits)
    cpu = DictionaryLearner(device="cpu", **params).fit(digits)
    assert abs(gpu.score(digits) - cpu.score(digits)) < 0.02 * abs(cpu.score(digits))
    # The same dictionary codes the same on both devices (FISTA stops at a
    # 1e-4 relative duality gap, so codes agree to about 1e-3).
    codes = gpu.transform(digits)
    score = gpu.score(digits)
    np.testing.assert_allclose(gpu.set_params(device="cpu").transform(digits), codes,
                               rtol=1e-2, atol=2e-3)
    assert abs(gpu.score(digits) - score) < 1e-3 * abs(score)
    gpu.set_params(device="cuda")
    blob = pickle.dumps(gpu)
    _as_if_cpu_only(monkeypatch)
    restored = pickle.loads(blob)
    with pytest.warns(UserWarning, match="Running on the CPU instead"):
        np.testing.assert_allclose(restored.transform(digits), codes, rtol=1e-2,
                                   atol=2e-3)


def test_supervised_dictionary_learner_on_the_gpu_classifies_like_on_the_cpu():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    # Train on the first 1437 digits, test on the last 360 (other writers).
    train, test = slice(None, 1437), slice(1437, None)
    accuracies = {}
    for device in ("cuda", "cpu"):
        codes = DictionaryLearner(n_components=64, random_state=0, device=device)
        pipeline = make_pipeline(codes, StandardScaler(),
                                 LogisticRegression(max_iter=1000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(X[train], y[train])
        accuracies[device] = pipeline.score(X[test], y[test])
        if device == "cuda":
            gpu = codes
    # Different random streams, same method: close accuracies (about 0.96).
    assert accuracies["cuda"] > 0.93
    assert accuracies["cuda"] > accuracies["cpu"] - 0.02
    assert gpu.head_coef_.shape == (10, 64)
    # The input noise scale, measured on the GPU, is a plain float (no CUDA
    # tensor in the pickle), kept with the pickled model, whose supervised
    # partial_fit continues on the GPU.
    assert type(gpu._input_noise_std) is float
    spread = np.sqrt(X[train].astype(np.float64).var(axis=0).mean())
    assert gpu._input_noise_std == pytest.approx(0.3 * spread, rel=1e-4)
    restored = pickle.loads(pickle.dumps(gpu))
    assert restored._input_noise_std == gpu._input_noise_std
    restored.partial_fit(X[:256], y[:256])
    assert np.isfinite(restored.components_).all()
    assert restored.n_steps_ == gpu.n_steps_ + 1


def test_jpeg_files_decoded_on_the_gpu_match_the_cpu_decoder(monkeypatch):
    import sklearn_replearn.vision._batching as batching
    from sklearn_replearn.vision._inputs import ItemImages
    from sklearn_replearn.vision._jpeg import load_decoded

    paths = list(load_sample_images().filenames)
    images = ItemImages(paths, check_range=True)
    on_gpu = load_decoded(images, range(len(paths)), torch.device("cuda"))
    for index, image in enumerate(on_gpu):
        assert image.is_cuda
        # nvJPEG and libjpeg-turbo round their IDCT and chroma upsampling
        # differently: a few intensity levels on some pixels.
        difference = (image.cpu().int() - images.load(index).int()).abs()
        assert difference.max() <= 8 and difference.float().mean() < 1.0
    features = PretrainedCNNFeatures("resnet18", weights=None, image_size=128,
                                     random_state=0, batch_size=2,
                                     device="cuda").fit(paths)
    decoded = features.transform(paths)
    monkeypatch.setattr(batching, "use_device_decoding", lambda images, device:
                        False)
    pil = features.transform(paths)
    cosine = (decoded * pil).sum(1) / (np.linalg.norm(decoded, axis=1)
                                       * np.linalg.norm(pil, axis=1))
    assert cosine.min() >= 0.999, cosine
