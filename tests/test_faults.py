"""Fault injection across every estimator and the extract command.

For each bad input, bad parameter or fault, the library must answer with a
ValueError/TypeError (or its own exception) whose message names the problem,
or with the same result as for the clean input: never a raw torch, numpy or
skorch error, never NaN output from finite input, and never a changed model
after a failed call. The estimator-specific suites go deeper
(tests/dictionary/test_estimator.py, tests/vision/test_estimator.py,
tests/test_extract.py); this one runs one table against all of them.
"""

import io
import os
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import load_digits
from torch import nn

from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)
from sklearn_replearn.exceptions import TrainingDivergedError

pd = pytest.importorskip("pandas")

DIGITS = load_digits().data[:240] / 16.0

ARRAY_ESTIMATORS = {
    "ae": lambda: AutoencoderTransformer(n_components=3, hidden_layer_sizes=(8,),
                                         max_iter=2, random_state=0),
    "vae": lambda: VAETransformer(n_components=2, hidden_layer_sizes=(8,),
                                  max_iter=2, random_state=0),
    "dict": lambda: DictionaryLearner(n_components=6, alpha=0.1, max_iter=2,
                                      random_state=0),
}


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


@pytest.fixture(scope="module")
def fitted():
    return {name: _quiet(make().fit, DIGITS) for name, make in ARRAY_ESTIMATORS.items()}


def _fitted_numbers(estimator):
    """The fitted attributes that are plain numbers, lists or arrays."""
    return {name: value for name, value in vars(estimator).items()
            if name.endswith("_") and isinstance(value, (int, float, list,
                                                          np.ndarray))}


def _state(estimator):
    """Everything a failed call must leave unchanged: attributes and outputs."""
    return (sorted(vars(estimator)), _fitted_numbers(estimator),
            estimator.transform(DIGITS[:20]))


def _assert_unchanged(estimator, state):
    names, numbers, codes = state
    assert sorted(vars(estimator)) == names
    now = _fitted_numbers(estimator)
    assert now.keys() == numbers.keys()
    for name, value in numbers.items():
        np.testing.assert_array_equal(now[name], value, err_msg=name)
    np.testing.assert_array_equal(estimator.transform(DIGITS[:20]), codes)


# --------------------------------------------------- bad inputs: clear errors
BAD_INPUTS = {
    "nan": (lambda: np.where(np.eye(20, 64) > 0, np.nan, DIGITS[:20]), "NaN"),
    "inf": (lambda: np.where(np.eye(20, 64) > 0, np.inf, DIGITS[:20]), "infinity"),
    "beyond float32": (lambda: DIGITS[:20] * 1e300, "float32"),
    "1-D": (lambda: DIGITS[0], "2D array"),
    "empty": (lambda: np.empty((0, 64)), "0 sample"),
    "strings": (lambda: np.array([["a"] * 64] * 3), "non-numeric.*Encode categories"),
    "complex": (lambda: DIGITS[:3] + 1j, "[Cc]omplex"),
    "wrong width": (lambda: DIGITS[:5, :10], "64 features"),
}


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
def test_bad_input_at_transform_is_a_clear_error(fitted, name, bad):
    estimator = fitted[name]
    state = _state(estimator)
    make_X, message = BAD_INPUTS[bad]
    with pytest.raises(ValueError, match=message):
        estimator.transform(make_X())
    _assert_unchanged(estimator, state)


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
@pytest.mark.parametrize("bad", sorted(set(BAD_INPUTS) - {"wrong width"}))
def test_bad_input_at_fit_leaves_the_model_as_it_was(fitted, name, bad):
    estimator = pickle.loads(pickle.dumps(fitted[name]))
    state = _state(estimator)
    make_X, message = BAD_INPUTS[bad]
    with pytest.raises(ValueError, match=message):
        _quiet(estimator.fit, make_X())
    _assert_unchanged(estimator, state)


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
@pytest.mark.parametrize("param, value", [
    ("batch_size", 0), ("max_iter", -1), ("n_components", 0),
    ("random_state", "seed"), ("verbose", -2),
])
def test_bad_parameter_after_fit_is_refused_where_used(fitted, name, param, value):
    estimator = pickle.loads(pickle.dumps(fitted[name]))
    state = _state(estimator)
    estimator.set_params(**{param: value})
    with pytest.raises(ValueError, match=param):
        estimator.transform(DIGITS[:5])
    with pytest.raises(ValueError, match=param):
        estimator.partial_fit(DIGITS[:50])
    estimator.set_params(**fitted[name].get_params())
    _assert_unchanged(estimator, state)


# ------------------------------------------ odd but valid inputs: clean result
ODD_INPUTS = {
    "float16": lambda X: X.astype(np.float16),
    "int8": lambda X: (X * 16).astype(np.int8),
    "bool": lambda X: X > 0.5,
    "list": lambda X: X.tolist(),
    "frame of mixed dtypes": lambda X: pd.DataFrame(
        {f"f{i}": (X[:, i] * 16).astype(np.int64) if i % 2 else X[:, i]
         for i in range(X.shape[1])}),
    "constant": lambda X: np.full_like(X, 0.5),
    "tiny values": lambda X: X * 1e-30,
}


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
@pytest.mark.parametrize("odd", sorted(ODD_INPUTS))
def test_odd_but_valid_input_gives_finite_output(name, odd):
    X = ODD_INPUTS[odd](DIGITS)
    estimator = _quiet(ARRAY_ESTIMATORS[name]().fit, X)
    codes = estimator.transform(X)
    assert codes.shape == (len(DIGITS), estimator._n_features_out)
    assert np.isfinite(codes).all()


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
def test_one_sample_and_fewer_samples_than_a_batch(name):
    estimator = ARRAY_ESTIMATORS[name]()
    if estimator.get_params().get("early_stopping"):
        # The default validation split cannot hold out a row of one sample:
        # a clear error with the fix, then the fix works.
        with pytest.raises(ValueError, match="early_stopping=False"):
            _quiet(clone(estimator).fit, DIGITS[:1])
        estimator.set_params(early_stopping=False)
    one = _quiet(clone(estimator).fit, DIGITS[:1])
    assert np.isfinite(one.transform(DIGITS[:3])).all()
    few = _quiet(ARRAY_ESTIMATORS[name]().set_params(batch_size=500).fit, DIGITS[:7])
    assert np.isfinite(few.transform(DIGITS[:7])).all()


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
def test_sparse_input_is_streamed_or_refused_clearly(fitted, name):
    estimator = fitted[name]
    X = sp.csr_matrix(DIGITS[:30])
    if estimator.__sklearn_tags__().input_tags.sparse:
        np.testing.assert_allclose(estimator.transform(X),
                                   estimator.transform(DIGITS[:30]), rtol=1e-6)
    else:
        with pytest.raises(TypeError, match="[Ss]parse"):
            estimator.transform(X)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_shapes_dtypes_and_values(fitted, data):
    """Any finite input codes finitely; anything else is a clear error."""
    name = data.draw(st.sampled_from(sorted(fitted)))
    estimator = fitted[name]
    n_rows = data.draw(st.integers(1, 12))
    dtype = data.draw(st.sampled_from([np.float64, np.float32, np.float16]))
    width = 16 if dtype == np.float16 else 64
    elements = st.one_of(
        st.floats(-6e4, 6e4, width=width),
        st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e-30]),
    )
    X = data.draw(hnp.arrays(dtype, (n_rows, 64), elements=elements))
    state = _state(estimator)
    if not np.isfinite(X).all():
        with pytest.raises(ValueError, match="NaN|infinity"):
            estimator.transform(X)
    else:
        codes = estimator.transform(X)
        assert np.isfinite(codes).all(), (name, X)
        # A row's code does not depend on the other rows.
        np.testing.assert_allclose(estimator.transform(X[:1])[0], codes[0],
                                   rtol=1e-5, atol=1e-6)
    _assert_unchanged(estimator, state)


# --------------------------------------------------------- faults in training
@pytest.mark.parametrize("name", ["ae", "vae"])
def test_a_diverging_partial_fit_leaves_the_model_as_it_was(fitted, name):
    estimator = pickle.loads(pickle.dumps(fitted[name]))
    state, n_iter = _state(estimator), estimator.n_iter_
    lr = estimator.net_.optimizer_.param_groups[0]["lr"]
    n_rows = len(estimator.net_.history)
    estimator.set_params(learning_rate=1e4)
    with pytest.raises(TrainingDivergedError, match="learning_rate"):
        estimator.partial_fit(DIGITS)
    assert estimator.n_iter_ == n_iter
    # The net's settings and history are back too.
    assert estimator.net_.optimizer_.param_groups[0]["lr"] == lr
    assert len(estimator.net_.history) == n_rows
    _assert_unchanged(estimator, state)


@pytest.mark.parametrize("name", ["ae", "vae"])
@pytest.mark.parametrize("reload", [False, True])
def test_divergence_over_many_small_partial_fits_is_caught(fitted, name, reload):
    """Each call is one epoch of one batch: the reference must persist."""
    estimator = pickle.loads(pickle.dumps(fitted[name]))
    estimator.set_params(learning_rate=1e3)
    with pytest.raises(TrainingDivergedError, match="exploded|became"):
        for start in range(0, 30 * 60, 60):
            if reload:
                estimator = pickle.loads(pickle.dumps(estimator))
            chunk = DIGITS[start % 180:start % 180 + 60]
            estimator.partial_fit(chunk)
    assert np.isfinite(estimator.transform(DIGITS)).all()


def test_vae_partial_fit_uses_the_current_beta(fitted):
    vae = pickle.loads(pickle.dumps(fitted["vae"])).set_params(beta=7.0)
    vae.partial_fit(DIGITS)
    np.testing.assert_allclose(
        vae.loss_curve_[-1],
        -vae.reconstruction_curve_[-1] + 7.0 * vae.kl_curve_[-1], rtol=1e-5)


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_partial_fit_honours_the_current_training_settings(fitted, name):
    estimator = pickle.loads(pickle.dumps(fitted[name]))
    estimator.set_params(learning_rate=0.02, batch_size=60).partial_fit(DIGITS)
    assert estimator.net_.optimizer_.param_groups[0]["lr"] == 0.02
    assert len(estimator.net_.history[-1]["batches"]) == 4  # 240 rows / 60
    estimator.set_params(n_components=5)
    with pytest.raises(ValueError, match="n_components=.* Call fit"):
        estimator.partial_fit(DIGITS)


# ------------------------------------------------------------------ images
@pytest.fixture(scope="module")
def cnn():
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    images = (np.random.RandomState(0).rand(2, 16, 16, 3) * 255).astype(np.uint8)
    return PretrainedCNNFeatures(backbone, weights=None, image_size=(16, 16),
                                 device="cpu", batch_size=4).fit(images)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "CMYK", "I", "F",
                                  "I;16", "LA", "YCbCr", "HSV", "PA", "RGBX"])
def test_every_pil_mode_gives_finite_features_or_a_clear_error(cnn, mode):
    rgb = Image.fromarray((np.random.RandomState(0).rand(20, 24, 3) * 255)
                          .astype(np.uint8))
    image = rgb.convert("L").convert(mode) if mode == "I;16" else rgb.convert(mode)
    if mode in ("I", "F", "I;16"):
        # High bit depth has no one scale to [0, 1]: the user must choose it.
        with pytest.raises(ValueError, match=f"mode '{mode}'.*convert it"):
            cnn.transform([image])
        return
    features = cnn.transform([image])
    assert features.shape == (1, 4) and np.isfinite(features).all()


@pytest.mark.parametrize("content", [
    b"", b"this is not an image", b"\xff\xd8\xff\xe0" + b"\x00" * 20,
])
def test_corrupt_or_text_files_named_as_images_are_named_in_the_error(
        cnn, tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="broken.jpg"):
        cnn.transform([str(path)])


def test_truncated_jpeg_is_an_error_naming_it(cnn, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(ValueError, match="cut.jpg"):
        cnn.transform([str(path)])


# ---------------------------------------------------------------- the CLI
@pytest.mark.parametrize("arguments, message", [
    (["no/such/folder"], "neither an image file nor a folder"),
    (["{images}", "--out", "{tmp}/missing/f.npy"], "does not exist"),
    (["{images}", "--backbone", "no_such_net", "--weights", "none"], "no_such_net"),
    (["{images}", "--no-download"], "downloading is off"),
])
@pytest.mark.slow
def test_extract_command_refuses_bad_paths_and_names_clearly(
        tmp_path, arguments, message):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.png")
    arguments = [a.format(images=images, tmp=tmp_path) for a in arguments]
    done = subprocess.run(
        [sys.executable, "-m", "sklearn_replearn", "extract", *arguments,
         *(["--out", str(tmp_path / "f.npy")] if "--out" not in arguments else [])],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TORCH_HOME": str(tmp_path / "hub")})
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------- scores of data beyond float32's range
def _scorers(estimator):
    """The scoring methods of an estimator: score, and score_samples if any."""
    methods = [estimator.score]
    if hasattr(estimator, "score_samples"):
        methods.append(estimator.score_samples)
    return methods


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
def test_score_of_values_whose_squares_overflow_float32_is_a_clear_error(
        fitted, name):
    # X * 1e30 fits float32, but its squared errors do not: the autoencoder's
    # and the VAE's score (and score_samples) returned -inf or NaN.
    estimator = fitted[name]
    state = _state(estimator)
    for method in _scorers(estimator):
        with pytest.raises(ValueError, match=r"up to 1e\+30.*overflow.*Scale X"):
            method(DIGITS[:20] * 1e30)
    _assert_unchanged(estimator, state)
    # Large values whose squares fit still score finitely.
    for method in _scorers(estimator):
        assert np.all(np.isfinite(method(DIGITS[:20] * 1e6)))


# --------------------------------------- strings and categories: encode first
def _frame_with(column):
    frame = pd.DataFrame(DIGITS[:12, :63], columns=[f"f{i}" for i in range(63)])
    frame["colour"] = column
    return frame


NON_NUMERIC = {
    "object array of strings": lambda: np.where(
        DIGITS[:12] > 0.5, "high", "low").astype(object),
    "string array": lambda: np.where(DIGITS[:12] > 0.5, "high", "low"),
    "frame with a string column": lambda: _frame_with(["red", "blue"] * 6),
    "frame with a categorical column": lambda: _frame_with(
        pd.Categorical(["red", "blue"] * 6)),
}


@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
@pytest.mark.parametrize("kind", sorted(NON_NUMERIC))
def test_strings_and_categories_say_to_encode_them_first(fitted, name, kind):
    # numpy's "could not convert string to float: 'x'" came through, at fit
    # and at transform, naming neither the column nor the fix.
    estimator = pickle.loads(pickle.dumps(fitted[name]))
    state = _state(estimator)
    X = NON_NUMERIC[kind]()
    expected = "colour" if "frame" in kind else "'(high|low)'"
    for method in (estimator.fit, estimator.transform):
        with pytest.raises(ValueError, match="non-numeric") as error:
            _quiet(method, X)
        message = str(error.value)
        assert re.search(expected, message), message
        assert "Encode categories first" in message, message
        assert "OneHotEncoder" in message, message
        assert "could not convert" not in message, message
    _assert_unchanged(estimator, state)


# --------------------------------------- float16, int and bool: float64 out
@pytest.mark.parametrize("name", sorted(ARRAY_ESTIMATORS))
@pytest.mark.parametrize("odd", ["float16", "int8", "bool"])
def test_float16_int_and_bool_input_give_float64_as_in_sklearn(name, odd):
    # As scikit-learn's estimators do (PCA, MiniBatchDictionaryLearning):
    # only float32 and float64 are preserved; other dtypes compute and
    # return in float64. (Documented in the README's "Errors and guarantees".)
    X = ODD_INPUTS[odd](DIGITS)
    estimator = _quiet(ARRAY_ESTIMATORS[name]().fit, X)
    codes = estimator.transform(X)
    assert codes.dtype == np.float64
    assert estimator.inverse_transform(codes.astype(np.float16)).dtype == np.float64
    assert estimator.transform(X.astype(np.float32)).dtype == np.float32
