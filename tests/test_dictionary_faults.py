"""DictionaryLearner under faults: failed calls change nothing, clear errors,
parameters checked where used, safe persistence, initial atoms, codes that do
not depend on the other rows of a batch."""

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_sample_image
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.image import extract_patches_2d
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import (
    check_methods_sample_order_invariance,
    check_methods_subset_invariance,
)

from sklearn_replearn import DictionaryLearner
from sklearn_replearn.dictionary._online import OnlineDictionaryLearning
from sklearn_replearn.dictionary._task_driven import TaskDrivenPhase
from sklearn_replearn.exceptions import TrainingDivergedError
from sklearn_replearn.sparse import init_dictionary, lipschitz_constant

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


def _small(**params):
    return DictionaryLearner(**{**dict(n_components=8, alpha=0.3, max_iter=2,
                                       tol=None, random_state=0, device="cpu"),
                                **params})


def _state(estimator):
    """The estimator's attributes, arrays copied (to compare before/after)."""
    return {key: (value.copy() if isinstance(value, np.ndarray) else value)
            for key, value in vars(estimator).items()}


def _assert_same_state(estimator, saved):
    state = vars(estimator)
    assert state.keys() == saved.keys()
    for key, value in saved.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(state[key], value, err_msg=key)
        elif key != "_optimizer_state":
            assert state[key] == value, key


# ----------------------------------------------------------- item 1: refits
@pytest.mark.parametrize("supervised", [False, True])
def test_failed_refit_leaves_the_estimator_as_it_was(digits, supervised):
    X, y = digits
    dl = _small().fit(X, y if supervised else None)
    codes, saved = dl.transform(X), _state(dl)
    # X is accepted (and n_features_in_ reset) before y is refused.
    with pytest.raises(ValueError, match="y has 5 labels"):
        dl.fit(X[:, :10], y[:5])
    assert dl.n_features_in_ == 64
    _assert_same_state(dl, saved)
    np.testing.assert_array_equal(dl.transform(X), codes)


def test_failed_refit_of_an_unfitted_estimator_leaves_it_unfitted(digits):
    X, y = digits
    dl = _small()
    with pytest.raises(ValueError, match="y has 5 labels"):
        dl.fit(X[:, :10], y[:5])
    assert not hasattr(dl, "n_features_in_")


@pytest.mark.parametrize("supervised", [False, True])
def test_failed_partial_fit_leaves_the_model_untouched(digits, monkeypatch,
                                                        supervised):
    # A step that fails after the first minibatch has been trained: the
    # dictionary, statistics and head must be those from before the call, also
    # for float32 data (whose arrays the learner's tensors could share).
    X, y = digits
    X = X.astype(np.float32)
    dl = _small(batch_size=50).fit(X, y if supervised else None)
    dl.partial_fit(X, y if supervised else None)
    codes, saved = dl.transform(X), _state(dl)
    owner = TaskDrivenPhase if supervised else OnlineDictionaryLearning
    original, calls = owner.step, []

    def failing_step(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("planted failure")
        return original(self, *args)

    monkeypatch.setattr(owner, "step", failing_step)
    with pytest.raises(RuntimeError, match="planted"):
        dl.partial_fit(X, y if supervised else None)
    _assert_same_state(dl, saved)
    np.testing.assert_array_equal(dl.transform(X), codes)


def test_diverged_partial_fit_leaves_the_model_untouched(digits):
    X, y = digits
    dl = _small(n_components=16).fit(X, y)
    saved = _state(dl)
    with pytest.raises(TrainingDivergedError):
        for _ in range(3):
            dl.set_params(learning_rate=1e6).partial_fit(X, y)
    dl.set_params(learning_rate=3e-2)
    # Calls before the diverging one may have succeeded; the failed one left
    # a consistent model that still codes.
    assert np.isfinite(dl.components_).all()
    assert np.isfinite(dl.transform(X)).all()
    assert saved["n_features_in_"] == dl.n_features_in_


# --------------------------------------------- item 3: values beyond float32
@pytest.mark.parametrize("supervised", [False, True])
def test_squares_beyond_float32_are_refused_clearly(digits, supervised):
    X, y = digits
    with pytest.raises(ValueError, match=r"up to 1e\+18.*overflow.*Scale X"):
        _small().fit(X * 1e18, y if supervised else None)
    # Supervised training squares the gradients again (Adam): a tighter bound.
    if supervised:
        with pytest.raises(ValueError, match=r"gradients.*Scale X"):
            _small().fit(X * 1e10, y)
    dl = _small().fit(X)
    for method in (dl.transform, dl.score, dl.partial_fit):
        with pytest.raises(ValueError, match=r"overflow.*Scale X"):
            method(X * 1e18)
    # Large but safe scales still fit and code.
    big = _small().fit(X * 1e8, y if supervised else None)
    assert np.isfinite(big.transform(X * 1e8)).all()


def test_lipschitz_constant_of_an_overflowed_gram_says_so():
    with pytest.raises(ValueError, match="overflowed float32"):
        lipschitz_constant(torch.tensor([[float("inf"), 0.0], [0.0, 1.0]]))


# ------------------------------------ item 4: parameters checked where used
@pytest.mark.parametrize(
    "params, message",
    [
        (dict(transform_algorithm="lars"), "transform_algorithm"),
        (dict(transform_algorithm="lasso_fsta"), "transform_algorithm"),
        (dict(batch_size=0), "batch_size"),
        (dict(transform_alpha=-1), "transform_alpha"),
        (dict(learning_rate=-1), "learning_rate"),
    ],
    ids=["lars", "typo", "batch_size0", "transform_alpha", "learning_rate"],
)
def test_parameters_changed_after_fit_are_checked_where_used(digits, params,
                                                              message):
    X, y = digits
    dl = _small().fit(X, y)
    codes, saved = dl.transform(X), _state(dl)
    dl.set_params(**params)
    for call in (lambda: dl.transform(X), lambda: dl.score(X),
                 lambda: dl.inverse_transform(codes), lambda: dl.partial_fit(X),
                 lambda: dl.partial_fit(X, y), lambda: dl.fit_transform(X)):
        with pytest.raises(InvalidParameterError, match=message):
            call()
    _assert_same_state(dl.set_params(**_small().get_params()), saved)


def test_invalid_combination_and_resize_are_refused_after_fit(digits):
    X, _ = digits
    dl = _small().fit(X)
    dl.set_params(transform_algorithm="omp", positive_code=True)
    for call in (dl.transform, dl.score, dl.partial_fit):
        with pytest.raises(ValueError, match="positive_code=True.*'omp'"):
            call(X)
    dl.set_params(transform_algorithm="lasso_fista", positive_code=False,
                  n_components=4)
    with pytest.raises(ValueError, match="n_components=4.*8 atoms.*call fit"):
        dl.partial_fit(X)
    assert dl.components_.shape == (8, 64)


def test_partial_fit_honours_the_current_parameters(digits, monkeypatch):
    X, y = digits
    dl = _small(batch_size=100).fit(X)
    seen = []
    original = OnlineDictionaryLearning.step

    def spy(self, batch, codes, index):
        seen.append((self.alpha, self.forget_exponent, self.positive_dict,
                     batch.shape[0]))
        return original(self, batch, codes, index)

    monkeypatch.setattr(OnlineDictionaryLearning, "step", spy)
    steps = dl.n_steps_
    dl.set_params(alpha=0.05, batch_size=64, forget_exponent=1.0,
                  positive_dict=True).partial_fit(X)
    assert {entry[:3] for entry in seen} == {(0.05, 1.0, True)}
    # ceil(300 / 64) = 5 balanced minibatches of 60 rows.
    assert [entry[3] for entry in seen] == [60] * 5
    assert dl.n_steps_ == steps + 5
    assert (dl.components_ >= 0).all()


# ----------------------------------------------- item 7: one class is no task
def test_supervised_fit_needs_two_classes(digits):
    X, _ = digits
    one = np.zeros(X.shape[0])
    with pytest.raises(ValueError, match="at least 2 classes.*fit got only 1 class"):
        _small().fit(X, one)
    with pytest.raises(ValueError, match="at least 2 classes.*partial_fit"):
        _small().partial_fit(X, one)
    with pytest.raises(ValueError, match="at least 2 classes"):
        _small().partial_fit(X, one, classes=[0])
    # A first chunk of one class is fine when classes= lists all of them, and
    # so are later chunks of one class.
    dl = _small().partial_fit(X, one, classes=[0, 1])
    dl.partial_fit(X, one)
    np.testing.assert_array_equal(dl.classes_, [0, 1])
    # supervision_weight=0 ignores y, whatever it holds.
    _small(supervision_weight=0).fit(X, one)


# ----------------------------------------------- item 10: skops persistence
@pytest.mark.parametrize("supervised", [False, True])
@pytest.mark.parametrize("continued", [False, True])
def test_skops_round_trip_trusts_only_our_class(digits, supervised, continued):
    sio = pytest.importorskip("skops.io")
    X, y = digits
    labels = y if supervised else None
    dl = _small().fit(X, labels)
    if continued:
        dl.partial_fit(X, labels)
    data = sio.dumps(dl)
    ours = ["sklearn_replearn.dictionary._estimator.DictionaryLearner"]
    assert sio.get_untrusted_types(data=data) == ours
    loaded = sio.loads(data, trusted=ours)
    np.testing.assert_array_equal(loaded.transform(X), dl.transform(X))
    assert loaded.score(X) == dl.score(X)
    # The loaded model continues as the original does (Adam state included).
    dl.partial_fit(X, labels)
    loaded.partial_fit(X, labels)
    np.testing.assert_allclose(loaded.components_, dl.components_, rtol=1e-6)


@pytest.mark.parametrize("payload", ["builtins.eval", "os.system"])
def test_tampered_skops_file_is_refused_and_runs_nothing(digits, payload,
                                                         tmp_path):
    import json
    import zipfile

    sio = pytest.importorskip("skops.io")
    X, y = digits
    dl = _small().fit(X, y)
    dl.partial_fit(X, y)
    source = tmp_path / "model.skops"
    sio.dump(dl, source)
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(files["schema.json"])
    module, name = payload.rsplit(".", 1)
    # A state entry replaced by a reference to a function.
    schema["content"]["content"]["_input_noise_std"] = {
        "__class__": name, "__module__": module,
        "__loader__": "TypeNode", "__id__": 999_999,
    }
    tampered = tmp_path / "tampered.skops"
    with zipfile.ZipFile(tampered, "w") as archive:
        for entry, content in files.items():
            archive.writestr(entry, json.dumps(schema) if entry == "schema.json"
                             else content)
    assert payload in sio.get_untrusted_types(file=tampered)
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.load(tampered, trusted=[
            "sklearn_replearn.dictionary._estimator.DictionaryLearner"])


# ------------------------------------------- item 11: initial atoms unit norm
@pytest.mark.parametrize("positive", [False, True])
def test_initial_atoms_have_unit_norm_beyond_the_rank(positive):
    # 100 atoms on 64 features of rank 10: 10 from the SVD, 90 from samples.
    rng = np.random.RandomState(0)
    X = torch.as_tensor(rng.rand(200, 10) @ rng.randn(10, 64), dtype=torch.float32)
    if positive:
        X = X.abs()
    D = init_dictionary(X, 100, positive=positive)
    assert D.shape == (100, 64)
    np.testing.assert_allclose(torch.linalg.vector_norm(D, dim=1).numpy(), 1.0,
                               rtol=1e-5)
    if positive:
        assert (D >= 0).all()


@pytest.mark.parametrize("positive", [False, True])
def test_estimator_initial_atoms_have_unit_norm(monkeypatch, positive):
    rng = np.random.RandomState(0)
    X = rng.rand(200, 10) @ rng.rand(10, 64)
    captured = []
    original = OnlineDictionaryLearning.initial.__func__

    def spy(cls, data, n_components, **settings):
        learner = original(cls, data, n_components, **settings)
        captured.append(learner.dictionary.clone())
        return learner

    monkeypatch.setattr(OnlineDictionaryLearning, "initial", classmethod(spy))
    DictionaryLearner(n_components=100, max_iter=1, tol=None, positive_dict=positive,
                      random_state=0, device="cpu").fit(X)
    norms = torch.linalg.vector_norm(captured[0], dim=1).numpy()
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_make_coder_refuses_unknown_names():
    # The coder choice once fell through to thresholding for any other name.
    from sklearn_replearn.sparse import make_coder

    with pytest.raises(ValueError, match="Unknown transform_algorithm 'lars'"):
        make_coder(torch.eye(3), "lars", alpha=1.0)


# ------------------------------------------------- item 9: batch invariance
@pytest.fixture(scope="module")
def invariance_models():
    """Fitted models by data set and size: digits, and centred 8x8 patches of
    a sample photograph (k=100 runs the working-set lasso, k=8 plain FISTA)."""
    image = load_sample_image("china.jpg").mean(axis=2) / 255.0
    patches = extract_patches_2d(image, (8, 8), max_patches=700,
                                 random_state=0).reshape(-1, 64)
    patches -= patches.mean(axis=1, keepdims=True)
    data = {"digits": (load_digits().data[:700] / 16.0, 0.2),
            "patches": (patches, 0.02)}
    models = {}
    for (name, n_components) in [("digits", 8), ("digits", 100), ("patches", 100)]:
        X, alpha = data[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = DictionaryLearner(n_components=n_components, alpha=alpha,
                                      max_iter=1, tol=None, random_state=0,
                                      device="cpu").fit(X[:300])
        models[name, n_components] = model, X[300:]
    return models


_SETTINGS = [("lasso_fista", False), ("lasso_fista", True), ("omp", False),
             ("threshold", False), ("threshold", True)]


_CASES = [
    (case, algorithm, positive)
    for case in [("digits", 8), ("digits", 100), ("patches", 100)]
    for algorithm, positive in _SETTINGS
    # scikit-learn's other lasso names run the same coder: once each.
] + [(("digits", 100), "lasso_lars", False), (("patches", 100), "lasso_cd", False)]


@pytest.mark.parametrize("case, algorithm, positive", [
    pytest.param(*c, id=f"{c[0][0]}-k{c[0][1]}-{c[1]}{'-positive' * c[2]}")
    for c in _CASES])
@pytest.mark.slow
def test_codes_do_not_depend_on_the_other_rows(invariance_models, case, algorithm,
                                               positive):
    # A row's codes once depended on the rows coded with it (float32
    # products of other shapes, and working-set widths, stopping and OMP's
    # last solve decided for the whole batch): up to 5e-3 apart at k=100.
    # Now alone, in shuffled subsets and all together they are bit-identical.
    model, X = invariance_models[case]
    model = copy.deepcopy(model).set_params(transform_algorithm=algorithm,
                                            positive_code=positive)
    full = model.transform(X)
    assert np.count_nonzero(full) > X.shape[0]  # real codes, not zeros
    rng = np.random.RandomState(0)
    for i in rng.choice(len(X), 4, replace=False):
        np.testing.assert_array_equal(model.transform(X[i:i + 1])[0], full[i])
    for size in (3, 60, len(X)):
        rows = rng.permutation(len(X))[:size]
        np.testing.assert_array_equal(model.transform(X[rows]), full[rows])
    # What uses the codes agrees too: the reconstruction row by row, and the
    # score (a mean of per-row objectives) of two halves and of the whole.
    i = int(rng.randint(len(X)))
    np.testing.assert_allclose(model.inverse_transform(model.transform(X[i:i + 1]))[0],
                               model.inverse_transform(full)[i], rtol=1e-12, atol=1e-12)
    half = len(X) // 2
    halves = (half * model.score(X[:half]) + (len(X) - half) * model.score(X[half:]))
    np.testing.assert_allclose(halves / len(X), model.score(X), rtol=1e-6)


@pytest.mark.parametrize("params", [
    dict(transform_algorithm="lasso_fista"),
    dict(transform_algorithm="lasso_fista", positive_code=True),
    dict(transform_algorithm="omp"),
    dict(transform_algorithm="threshold"),
])
def test_check_estimator_subset_invariance_with_many_atoms(params):
    # scikit-learn's own checks, with more atoms than features (working sets).
    estimator = DictionaryLearner(n_components=100, alpha=0.1, max_iter=1,
                                  random_state=0, device="cpu", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check_methods_subset_invariance("DictionaryLearner", estimator)
        check_methods_sample_order_invariance("DictionaryLearner", estimator)
