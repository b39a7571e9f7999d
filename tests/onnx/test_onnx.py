"""ONNX export (sklearn_replearn.onnx): graphs run in ONNX Runtime give what
transform, predict and predict_proba give, on digits and sample images."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_sample_images
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
sro = pytest.importorskip("sklearn_replearn.onnx")

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def run(model, X, name="X"):
    """All outputs of an ONNX model run by ONNX Runtime (CPU) on X."""
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {name: X})


def assert_relative(got, expected, rtol):
    """Equal to ``rtol`` relative to the largest expected value."""
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return X[:1200], y[:1200], X[1200:], y[1200:]


def check_pipeline(pipe, X_test, model):
    """Same class on every held-out row, probabilities close."""
    labels, probabilities = run(model, X_test)
    np.testing.assert_array_equal(labels, pipe.predict(X_test))
    np.testing.assert_allclose(probabilities, pipe.predict_proba(X_test), atol=1e-4)


def snapshot(estimator):
    """Parameters and fitted state, for checking that export changed nothing."""
    return pickle.dumps(estimator)


# ------------------------------------------------------------- autoencoders
@pytest.fixture(scope="module")
def ae_pipeline(digits):
    X, y, _, _ = digits
    ae = AutoencoderTransformer(n_components=8, hidden_layer_sizes=(32,),
                                max_iter=5, random_state=0)
    return make_pipeline(StandardScaler(), ae,
                         LogisticRegression(max_iter=300)).fit(X, y)


@pytest.mark.slow
def test_autoencoder_pipeline_is_one_graph_with_the_same_predictions(
        ae_pipeline, digits):
    _, _, X_test, _ = digits
    ae = ae_pipeline[1]
    before, codes = snapshot(ae), ae.transform(ae_pipeline[0].transform(X_test))
    model = sro.to_onnx(ae_pipeline, X_test[:2])
    assert len(model.graph.input) == 1
    check_pipeline(ae_pipeline, X_test, model)
    # The estimator alone: its codes to 1e-4 relative; export changed nothing.
    scaled = ae_pipeline[0].transform(X_test).astype(np.float32)
    assert_relative(run(sro.to_onnx(ae, scaled[:2]), scaled)[0], ae.transform(scaled),
                    1e-4)
    assert snapshot(ae) == before
    np.testing.assert_array_equal(ae.transform(ae_pipeline[0].transform(X_test)),
                                  codes)


@pytest.mark.slow
def test_skl2onnx_to_onnx_converts_after_import(ae_pipeline, digits):
    from skl2onnx import to_onnx

    _, _, X_test, _ = digits
    classifier = ae_pipeline[-1]
    model = to_onnx(ae_pipeline, X_test[:1],
                    options={id(classifier): {"zipmap": False}})
    check_pipeline(ae_pipeline, X_test, model)


@pytest.mark.slow
def test_vae_pipeline_and_decoder(digits):
    X, y, X_test, _ = digits
    vae = VAETransformer(n_components=4, hidden_layer_sizes=(32,), max_iter=5,
                         random_state=0)
    pipe = make_pipeline(vae, LogisticRegression(max_iter=300)).fit(X / 16, y)
    check_pipeline(pipe, X_test / 16, sro.to_onnx(pipe, X_test[:2]))
    codes = vae.transform(X_test / 16)
    assert_relative(run(sro.to_onnx(vae, X_test[:2]), X_test / 16)[0], codes, 1e-4)
    decoded = run(sro.decoder_to_onnx(vae), codes, "codes")[0]
    assert_relative(decoded, vae.inverse_transform(codes), 1e-4)


@pytest.mark.slow
def test_conv_autoencoder_float64_input_and_decoder(digits):
    X, _, X_test, _ = digits
    ae = AutoencoderTransformer(n_components=6, architecture="conv",
                                hidden_layer_sizes=(4, 8), image_shape=(1, 8, 8),
                                loss="bce", max_iter=2, random_state=0).fit(X / 16)
    X64 = (X_test / 16).astype(np.float64)
    (codes,) = run(sro.to_onnx(ae, X64[:2]), X64)
    assert codes.dtype == np.float64  # transform returns X's float dtype
    assert_relative(codes, ae.transform(X64), 1e-4)
    codes = ae.transform(X_test / 16)
    # loss="bce": inverse_transform applies the sigmoid, and so does the graph.
    assert_relative(run(sro.decoder_to_onnx(ae), codes, "codes")[0],
                    ae.inverse_transform(codes), 1e-4)


class _QREncoder(torch.nn.Module):
    """A user encoder with an operation that torch's exporter cannot convert."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 4)

    def forward(self, x):
        return self.linear(x) @ torch.linalg.qr(torch.eye(4) + x[:4, :4].T @ x[:4, :4]
                                                )[0]


@pytest.mark.slow
def test_user_module_that_cannot_be_exported_names_the_operation(digits):
    X, _, _, _ = digits
    ae = AutoencoderTransformer(encoder=_QREncoder(),
                                decoder=torch.nn.Linear(4, 64), max_iter=1,
                                random_state=0).fit(X[:100] / 16)
    with pytest.raises(ValueError, match="linalg_qr"):
        sro.to_onnx(ae, X[:2] / 16)
    # A user module of ordinary operations exports.
    ae.set_params(encoder=torch.nn.Sequential(torch.nn.Linear(64, 16),
                                              torch.nn.Tanh(),
                                              torch.nn.LayerNorm(16),
                                              torch.nn.Linear(16, 4))).fit(X / 16)
    (codes,) = run(sro.to_onnx(ae, X[:2] / 16), X / 16)
    assert_relative(codes, ae.transform(X / 16), 1e-4)


def test_unfitted_estimators_and_bad_samples_are_clear_errors(digits):
    X = digits[0][:4]
    for estimator in (AutoencoderTransformer(), VAETransformer(),
                      DictionaryLearner(), PretrainedCNNFeatures(weights=None)):
        with pytest.raises(NotFittedError):
            sro.to_onnx(estimator, X)
    with pytest.raises(ValueError, match="X_sample must be"):
        sro.to_onnx(AutoencoderTransformer(), X.astype(np.int64))
    ae = AutoencoderTransformer(n_components=2, max_iter=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="64 features"):
        sro.to_onnx(ae, X[:, :10])
    with pytest.raises(ValueError, match="target_opset=15"):
        sro.to_onnx(ae, X, target_opset=15)
    dictionary = DictionaryLearner(n_components=4, max_iter=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="opset 18"):
        sro.to_onnx(dictionary, X, target_opset=15)


@pytest.mark.slow
def test_import_of_the_package_does_not_import_onnx():
    code = ("import sys, sklearn_replearn; "
            "print(sorted(m for m in ('onnx', 'skl2onnx', 'onnxruntime') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------- dictionary
@pytest.fixture(scope="module")
def scaled_digits(digits):
    X, y, X_test, y_test = digits
    scaler = StandardScaler().fit(X)
    return (scaler.transform(X).astype(np.float32), y,
            scaler.transform(X_test).astype(np.float32))


@pytest.fixture(scope="module")
def dictionary(scaled_digits):
    X, _, _ = scaled_digits
    return DictionaryLearner(n_components=32, alpha=1.0, max_iter=3,
                             random_state=0).fit(X)


def lasso_objective(X, codes, D, alpha):
    residual = X.astype(np.float64) - codes.astype(np.float64) @ D
    return 0.5 * (residual ** 2).sum(1) + alpha * np.abs(codes).sum(1)


@pytest.mark.parametrize("positive", [False, True])
def test_dictionary_threshold_is_exact(dictionary, scaled_digits, positive):
    _, _, X_test = scaled_digits
    coder = pickle.loads(pickle.dumps(dictionary)).set_params(
        transform_algorithm="threshold", positive_code=positive)
    (codes,) = run(sro.to_onnx(coder, X_test[:2]), X_test)
    expected = coder.transform(X_test)
    # One matrix product and a shrinkage: float rounding of the product only.
    assert_relative(codes, expected, 1e-6)
    np.testing.assert_array_equal(codes == 0, expected == 0)


@pytest.mark.parametrize("positive", [False, True])
def test_dictionary_lasso_loop_meets_transforms_stopping_rule(
        dictionary, scaled_digits, positive):
    _, _, X_test = scaled_digits
    coder = pickle.loads(pickle.dumps(dictionary)).set_params(
        positive_code=positive)
    before = snapshot(coder)
    (codes,) = run(sro.to_onnx(coder, X_test[:2]), X_test)
    expected = coder.transform(X_test)
    assert snapshot(coder) == before
    # 32 atoms: transform runs plain FISTA, as the graph does; the rows stop at
    # the same duality-gap checks, so the codes differ by float rounding of
    # the iterations only.
    assert_relative(codes, expected, 1e-4)
    if positive:
        assert codes.min() >= 0
    D = coder.components_.astype(np.float64)
    ratio = lasso_objective(X_test, codes, D, 1.0) / lasso_objective(
        X_test, expected, D, 1.0)
    assert np.all(np.abs(ratio - 1) <= 2 * coder.transform_tol)


def test_dictionary_lasso_with_working_sets_within_tolerance(scaled_digits):
    X, _, X_test = scaled_digits
    coder = DictionaryLearner(n_components=100, alpha=1.0, max_iter=1,
                              random_state=0).fit(X)
    (codes,) = run(sro.to_onnx(coder, X_test[:2]), X_test[:200])
    expected = coder.transform(X_test[:200])
    # Over 64 atoms transform solves by working sets: another route to the
    # same certificate, each objective within 1 + transform_tol of the optimum.
    D = coder.components_.astype(np.float64)
    ratio = lasso_objective(X_test[:200], codes, D, 1.0) / lasso_objective(
        X_test[:200], expected, D, 1.0)
    assert np.all(np.abs(ratio - 1) <= 2 * coder.transform_tol)
    assert_relative(codes, expected, 2e-3)


@pytest.mark.slow
def test_dictionary_pipeline_and_omp_refused(dictionary, scaled_digits, digits):
    X, y, X_test = scaled_digits
    pipe = make_pipeline(pickle.loads(pickle.dumps(dictionary)),
                         LogisticRegression(max_iter=300)).fit(X, y)
    check_pipeline(pipe, X_test, sro.to_onnx(pipe, X_test[:2]))
    omp = pickle.loads(pickle.dumps(dictionary)).set_params(
        transform_algorithm="omp")
    with pytest.raises(ValueError, match="transform_algorithm='omp' cannot be"):
        sro.to_onnx(omp, X_test[:2])


# ------------------------------------------------------------------- images
@pytest.fixture(scope="module")
def crops():
    """48x64 crops of the two sample photos, labelled by photo."""
    photos = load_sample_images().images
    rng = np.random.RandomState(0)
    images, labels = [], []
    for index in range(40):
        top, left = rng.randint(0, 370), rng.randint(0, 570)
        images.append(photos[index % 2][top:top + 48, left:left + 64])
        labels.append(index % 2)
    return np.stack(images), np.array(labels)


def _small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))


def features(backbone, **params):
    params = {"weights": None, "random_state": 0, "batch_size": 8, "device": "cpu",
              "autocast": False, **params}  # float32: the graph's precision
    return PretrainedCNNFeatures(backbone, **params)


@pytest.mark.slow
def test_resnet_pipeline_on_sample_images(crops):
    images, labels = crops
    cnn = features("resnet18", image_size=(48, 64))
    pipe = make_pipeline(cnn, LogisticRegression(max_iter=500)).fit(
        images[:24], labels[:24])
    before, expected = snapshot(cnn), cnn.transform(images[24:])
    model = sro.to_onnx(pipe, images[:2])
    check_pipeline(pipe, images[24:], model)
    # No resize needed (image_size is the images' size): to 1e-4 relative.
    assert_relative(run(sro.to_onnx(cnn, images[:2]), images[24:])[0], expected,
                    1e-4)
    assert snapshot(cnn) == before


@pytest.mark.slow
def test_user_cnn_layer_and_pooling_match_without_resize(crops):
    images, _ = crops
    for layer, pooling in ((None, "avg"), ("2", "max"), ("4", None)):
        cnn = features(_small_cnn(), image_size=(48, 64), layer=layer,
                       pooling=pooling).fit(images[:2])
        before = snapshot(cnn)
        (got,) = run(sro.to_onnx(cnn, images[:2]), images)
        assert snapshot(cnn) == before
        assert_relative(got, cnn.transform(images), 1e-4)


@pytest.mark.slow
def test_resize_crop_grey_and_alpha_within_documented_tolerance(crops):
    images, _ = crops
    for size, channels in ((32, 3), (40, 1), (24, 4)):
        X = images[..., :1] if channels == 1 else images
        if channels == 4:
            X = np.concatenate([images, np.full_like(images[..., :1], 255)], axis=3)
        cnn = features(_small_cnn(), image_size=size).fit(X[:2])
        (got,) = run(sro.to_onnx(cnn, X[:2]), X)
        # torchvision's uint8 resize rounds ~1% of pixels one grey level
        # the other way (fixed-point weights): features within 1e-2 relative.
        assert_relative(got, cnn.transform(X), 1e-2)


@pytest.mark.slow
def test_preprocessing_pixels_differ_by_at_most_one_grey_level():
    from torchvision.transforms import InterpolationMode

    from sklearn_replearn.onnx._vision import _ImageFeatures
    from sklearn_replearn.vision._preprocessing import Preprocessing

    photos = np.stack(load_sample_images().images)
    for mode in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC):
        preprocess = Preprocessing(resize_size=64, crop_size=(64, 64), mean=None,
                                   std=None, interpolation=mode, antialias=True)
        module = _ImageFeatures(torch.nn.Identity(), None, None, preprocess,
                                photos.shape[1:])
        model = sro._graph.export_module(module, torch.from_numpy(photos),
                                         what="preprocessing")
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: photos})[0]
        got = got.reshape(2, 3, 64, 64) * 255
        expected = preprocess.prepare(torch.from_numpy(photos).permute(0, 3, 1, 2),
                                      "X").float().numpy()
        difference = np.abs(got - expected)
        assert difference.max() <= 1.0 + 1e-3
        assert (difference > 0.5).mean() < 0.01


def test_cnn_export_needs_uint8_images(crops):
    images, _ = crops
    cnn = features(_small_cnn(), image_size=(48, 64)).fit(images[:2])
    with pytest.raises(ValueError, match="uint8 images"):
        sro.to_onnx(cnn, images[:2].astype(np.float32) / 255)


def _guide_example():
    """The export and serving code blocks of the ONNX guide page."""
    import textwrap
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "guide" / "onnx.rst")
    section = guide.read_text().split("Export, then serve", 1)[1]
    blocks = []
    for part in section.split(".. code-block:: python\n")[1:3]:
        lines = []
        for line in part.splitlines()[1:]:  # the blank line after the directive
            if line and not line.startswith("   "):
                break  # the block ends at the first unindented line
            lines.append(line)
        blocks.append(textwrap.dedent("\n".join(lines)))
    assert "to_onnx" in blocks[0] and "onnxruntime" in blocks[1]
    return blocks


@pytest.mark.slow
def test_guide_example_serves_in_a_process_without_torch_or_sklearn(
        tmp_path, monkeypatch):
    export, serve = _guide_example()
    monkeypatch.chdir(tmp_path)
    exec(compile(export, "guide export", "exec"), {})
    check = serve + (
        "import sys\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'sklearn_replearn') "
        "if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_timm_and_hugging_face_backbones(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")  # noqa: F841
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64)
    torch.manual_seed(0)
    transformers.ViTModel(config).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32},
                                   image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(tmp_path)
    photos = load_sample_images().images
    # 32 x 32 crops: the backbones' input size, so no resize (1e-4 relative).
    images = np.stack([photos[i % 2][40 * i:40 * i + 32, 50 * i:50 * i + 32]
                       for i in range(6)])
    for backbone, params in (("timm:resnet18", {"image_size": 32}),
                             (f"hf:{tmp_path}", {"pooling": "cls"})):
        cnn = features(backbone, **params).fit(images[:1])
        (got,) = run(sro.to_onnx(cnn, images[:2]), images)
        assert_relative(got, cnn.transform(images), 1e-4)
