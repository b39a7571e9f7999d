"""AutoencoderTransformer on real data (sklearn's digits, scaled to [0, 1])."""

import io
import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from skorch.callbacks import Callback
from torch import nn

from sklearn_replearn import AutoencoderTransformer
from sklearn_replearn.exceptions import TrainingDivergedError


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    X = data.data / 16.0
    return train_test_split(X, data.target, test_size=0.25, random_state=0)


def heldout_mse(model, X):
    return float(np.mean((model.inverse_transform(model.transform(X)) - X) ** 2))


def fast_ae(**params):
    """A small, quick configuration for behaviour tests."""
    defaults = dict(n_components=4, hidden_layer_sizes=(32,), max_iter=15,
                    random_state=0, device="cpu")
    defaults.update(params)
    return AutoencoderTransformer(**defaults)


# --------------------------------------------------------------- quality
@pytest.mark.parametrize("n_components", [4, 8])
@pytest.mark.slow
def test_linear_autoencoder_matches_pca(digits, n_components):
    """PCA is the optimal linear autoencoder: a linear AE must reach it."""
    X_train, X_test, _, _ = digits
    pca = PCA(n_components, svd_solver="full").fit(X_train)
    ae = AutoencoderTransformer(
        n_components, activation="identity", max_iter=300, random_state=0
    ).fit(X_train)
    ratio = heldout_mse(ae, X_test) / heldout_mse(pca, X_test)
    assert ratio < 1.02, ratio


@pytest.mark.parametrize("n_components, bound", [(2, 0.75), (4, 0.7), (8, 0.7),
                                                 (16, 0.7)])
@pytest.mark.slow
def test_default_autoencoder_beats_pca(digits, n_components, bound):
    # A clear margin below PCA at every width. The default dropout (chosen
    # at width 16) costs a 2-wide code a little: 0.70 of PCA's error here,
    # against 0.67 without it (and 0.49 against 0.55 at width 16).
    X_train, X_test, _, _ = digits
    pca = PCA(n_components, svd_solver="full").fit(X_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae = AutoencoderTransformer(n_components, random_state=0).fit(X_train)
    ratio = heldout_mse(ae, X_test) / heldout_mse(pca, X_test)
    assert ratio <= bound, ratio
    # score is minus the mean squared reconstruction error.
    assert ae.score(X_test) == pytest.approx(-heldout_mse(ae, X_test), rel=1e-5)


@pytest.mark.slow
def test_partial_fit_over_chunks_reaches_fit(digits):
    X_train, X_test, _, _ = digits
    epochs = 40
    full = fast_ae(n_components=8, hidden_layer_sizes=(128,), max_iter=epochs,
                   tol=None).fit(X_train)
    online = fast_ae(n_components=8, hidden_layer_sizes=(128,))
    for _ in range(epochs):
        for chunk in np.array_split(X_train, 4):
            online.partial_fit(chunk)
    assert online.n_iter_ == 4 * epochs
    assert heldout_mse(online, X_test) <= 1.10 * heldout_mse(full, X_test)


@pytest.mark.slow
def test_denoising_autoencoder_fills_in_masked_pixels(digits):
    """Trained with masking noise, the AE restores masked test digits better."""
    X_train, X_test, _, _ = digits
    mask = np.random.RandomState(0).rand(*X_test.shape) >= 0.3
    errors = {}
    for denoising in (0.0, 0.3):
        ae = fast_ae(n_components=16, hidden_layer_sizes=(128,), max_iter=60,
                     denoising=denoising).fit(X_train)
        restored = ae.inverse_transform(ae.transform(X_test * mask))
        errors[denoising] = np.mean((restored - X_test) ** 2)
    assert errors[0.3] < 0.6 * errors[0.0], errors


@pytest.mark.slow
def test_conv_architecture_on_digit_images(digits):
    X_train, X_test, _, _ = digits
    ae = fast_ae(n_components=8, architecture="conv", image_shape=(1, 8, 8),
                 hidden_layer_sizes=(16, 32), max_iter=30, batch_size=64,
                 learning_rate=3e-3).fit(X_train)
    assert ae.transform(X_test).shape == (len(X_test), 8)
    assert ae.inverse_transform(ae.transform(X_test)).shape == X_test.shape
    assert ae.loss_curve_[-1] < 0.5 * ae.loss_curve_[0]
    pca = PCA(8).fit(X_train)
    assert heldout_mse(ae, X_test) < heldout_mse(pca, X_test)


def test_bce_loss_reconstructs_in_unit_interval(digits):
    X_train, X_test, _, _ = digits
    ae = fast_ae(loss="bce", max_iter=30).fit(X_train)
    reconstruction = ae.inverse_transform(ae.transform(X_test))
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1
    pca = PCA(2).fit(X_train)
    assert heldout_mse(ae, X_test) < heldout_mse(pca, X_test)


# --------------------------------------------------------------- sparsity
def _hoyer_sparseness(codes):
    """Hoyer's sparseness of each code, averaged: 0 all equal, 1 one-hot."""
    k = codes.shape[1]
    ratio = np.abs(codes).sum(axis=1) / np.sqrt((codes ** 2).sum(axis=1))
    return float(np.mean((np.sqrt(k) - ratio) / (np.sqrt(k) - 1)))


def test_sparsity_zero_trains_the_plain_module_with_the_criterion(digits):
    """The default adds no work per batch: same module, criterion, result."""
    from sklearn_replearn.autoencoder._modules import Autoencoder
    from sklearn_replearn.autoencoder._modules._autoencoder import SparseAutoencoder

    X_train, X_test, _, _ = digits
    plain = fast_ae(max_iter=3).fit(X_train)
    assert type(plain.module_) is Autoencoder
    assert not hasattr(plain.module_, "loss")
    assert isinstance(plain.net_.criterion_, torch.nn.MSELoss)
    explicit = fast_ae(max_iter=3, sparsity=0.0).fit(X_train)
    np.testing.assert_array_equal(explicit.transform(X_test),
                                  plain.transform(X_test))
    sparse = fast_ae(max_iter=3, sparsity=0.1).fit(X_train)
    assert type(sparse.module_) is SparseAutoencoder


def test_sparse_loss_is_sparse_coding_and_blind_to_rescaling():
    """The penalty weights |code_j| by its decoder column; rescaling is free."""
    from sklearn_replearn.autoencoder._modules import make_mlp
    from sklearn_replearn.autoencoder._modules._autoencoder import SparseAutoencoder

    torch.manual_seed(0)
    x = torch.randn(5, 6)
    model = SparseAutoencoder(make_mlp((6, 3), "relu"), make_mlp((3, 6), "relu"),
                              sparsity=0.5)
    code = model.encoder(x)
    columns = model.decoder[0].weight.norm(dim=0)
    expected = (torch.mean((model.decoder(code) - x) ** 2)
                + 2 * 0.5 / 6 * (code.abs() * columns).sum(dim=1).mean())
    torch.testing.assert_close(model.loss(model(x), x), expected)
    before = model.loss(model(x), x)
    with torch.no_grad():  # code unit 0 x10, the decoder column reading it /10
        model.encoder[0].weight[0] *= 10
        model.encoder[0].bias[0] *= 10
        model.decoder[0].weight[:, 0] /= 10
    torch.testing.assert_close(model.loss(model(x), x), before)

    # A deeper decoder: shrinking its first layer and growing the next one
    # (through the ReLU) leaves the output and the penalty as they were.
    deep = SparseAutoencoder(make_mlp((6, 3), "relu"),
                             make_mlp((3, 8, 6), "relu"), sparsity=0.5)
    before = deep.loss(deep(x), x)
    with torch.no_grad():
        deep.decoder[0].weight /= 10
        deep.decoder[0].bias /= 10
        deep.decoder[2].weight *= 10
    torch.testing.assert_close(deep.loss(deep(x), x), before)


@pytest.mark.slow
def test_sparsity_makes_codes_sparser_at_a_bounded_cost(digits):
    X_train, X_test, _, _ = digits
    # init="random": the two models differ only by the penalty (the plain
    # one would otherwise start at PCA, with another decoder module).
    models = {sparsity: fast_ae(n_components=16, hidden_layer_sizes=(),
                                max_iter=30, sparsity=sparsity,
                                init="random").fit(X_train)
              for sparsity in (0.0, 0.3)}
    sparseness = {}
    for sparsity, model in models.items():
        columns = model.module_.decoder[0].weight.detach().norm(dim=0).numpy()
        sparseness[sparsity] = _hoyer_sparseness(model.transform(X_test) * columns)
    # Measured 0.19 without and 0.43 with the penalty.
    assert sparseness[0.3] > sparseness[0.0] + 0.15, sparseness
    # The price in reconstruction (0.033 -> 0.042 measured), well under the
    # error of predicting every digit by the mean digit (0.07).
    mean_digit_error = np.mean((X_test - X_train.mean(axis=0)) ** 2)
    assert heldout_mse(models[0.3], X_test) < 0.75 * mean_digit_error
    # score is minus the reconstruction error alone; the loss has the penalty.
    sparse = models[0.3]
    assert sparse.score(X_test) == pytest.approx(-heldout_mse(sparse, X_test),
                                                 rel=1e-5)
    assert sparse.loss_curve_[-1] > -sparse.score(X_train)


def test_sparsity_with_bce_and_hidden_layers(digits):
    X_train, X_test, _, _ = digits
    ae = fast_ae(loss="bce", sparsity=0.1, max_iter=10).fit(X_train)
    reconstruction = ae.inverse_transform(ae.transform(X_test))
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]


def test_sparsity_is_structural_for_partial_fit(digits):
    X_train, _, _, _ = digits
    ae = fast_ae(sparsity=0.1)
    ae.partial_fit(X_train)
    ae.partial_fit(X_train)
    assert ae.n_iter_ == 2 and ae.loss_curve_[1] < ae.loss_curve_[0]
    ae.set_params(sparsity=0.0)
    with pytest.raises(ValueError, match="sparsity=0.1, but sparsity is now 0.0"):
        ae.partial_fit(X_train)
    assert ae.n_iter_ == 2


def test_sparse_model_round_trips_through_skops_and_pickle(digits):
    sio = pytest.importorskip("skops.io")
    X_train, X_test, _, _ = digits
    ae = fast_ae(sparsity=0.1, hidden_layer_sizes=(16,), max_iter=3).fit(X_train)
    data = sio.dumps(ae)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted == [
        "sklearn_replearn.autoencoder._autoencoder.AutoencoderTransformer"]
    for loaded in (sio.loads(data, trusted=untrusted),
                   pickle.loads(pickle.dumps(ae))):
        np.testing.assert_array_equal(loaded.transform(X_test), ae.transform(X_test))
        # Trains on exactly as the original (the penalty's reference norm
        # is saved with the weights).
        loaded.partial_fit(X_train)
    ae.partial_fit(X_train)
    np.testing.assert_array_equal(loaded.transform(X_test), ae.transform(X_test))


@pytest.mark.parametrize("name, value", [
    ("sparsity", -0.1), ("sparsity", "high"),
    ("dropout", -0.1), ("dropout", 1.0), ("dropout", "half"),
])
def test_bad_regulariser(digits, name, value):
    X_train, _, _, _ = digits
    with pytest.raises(ValueError, match=name):
        fast_ae(**{name: value}).fit(X_train)


def test_dropout_layers_follow_hidden_activations_only(digits):
    X_train, X_test, _, _ = digits
    for init in ("pca", "random"):
        ae = fast_ae(dropout=0.25, hidden_layer_sizes=(32, 16), init=init,
                     max_iter=2).fit(X_train)
        drops = [m for m in ae.module_.modules() if isinstance(m, nn.Dropout)]
        # One after each of the two hidden activations, encoder and decoder.
        assert len(drops) == 4 and all(m.p == 0.25 for m in drops)
        # Off at inference: transform is deterministic.
        np.testing.assert_array_equal(ae.transform(X_test), ae.transform(X_test))
    plain = fast_ae(max_iter=1, dropout=0.0).fit(X_train)
    assert not any(isinstance(m, nn.Dropout) for m in plain.module_.modules())


def test_dropout_is_structural_and_survives_pickle_and_clone(digits):
    X_train, X_test, _, _ = digits
    ae = fast_ae(dropout=0.2, max_iter=2).fit(X_train)
    assert clone(ae).get_params()["dropout"] == 0.2
    loaded = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(loaded.transform(X_test), ae.transform(X_test))
    assert any(isinstance(m, nn.Dropout) for m in loaded.module_.modules())
    loaded.partial_fit(X_train)
    assert loaded.n_iter_ == 3
    loaded.set_params(dropout=0.0)
    with pytest.raises(ValueError, match="dropout=0.2, but dropout is now 0.0"):
        loaded.partial_fit(X_train)
    assert loaded.n_iter_ == 3


def test_dropout_shapes_only_the_builtin_mlp(digits):
    X_train, _, _, _ = digits
    own = fast_ae(encoder=nn.Linear(64, 4), decoder=nn.Linear(4, 64),
                  max_iter=1).fit(X_train)
    conv = fast_ae(architecture="conv", image_shape=(1, 8, 8),
                   hidden_layer_sizes=(4,), max_iter=1).fit(X_train)
    for ae in (own, conv):
        assert ae.dropout > 0  # the default
        assert not any(isinstance(m, nn.Dropout) for m in ae.module_.modules())


# -------------------------------------------------------- sklearn workflow
@pytest.mark.slow
def test_pipeline_grid_search_and_cross_val_score(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline([
        ("ae", fast_ae(max_iter=30)),
        ("clf", LogisticRegression(max_iter=500)),
    ])
    search = GridSearchCV(pipe, {"ae__n_components": [2, 16]}, cv=3)
    search.fit(X_train, y_train)
    assert search.best_params_ == {"ae__n_components": 16}
    assert search.score(X_test, y_test) > 0.8
    scores = cross_val_score(pipe.set_params(ae__n_components=16), X_train, y_train,
                             cv=3)
    assert scores.mean() > 0.8


@pytest.mark.slow
def test_grid_search_without_labels_uses_reconstruction_score(digits):
    X_train, _, _, _ = digits
    search = GridSearchCV(fast_ae(), {"n_components": [1, 8]}, cv=3).fit(X_train)
    assert search.best_params_ == {"n_components": 8}
    assert np.all(search.cv_results_["mean_test_score"] < 0)


def test_pickle_joblib_clone_give_identical_transform(digits, tmp_path):
    X_train, X_test, _, _ = digits
    ae = fast_ae().fit(X_train)
    expected = ae.transform(X_test)
    restored = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(restored.transform(X_test), expected)
    joblib.dump(ae, tmp_path / "ae.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "ae.joblib").transform(X_test), expected
    )
    refit = clone(ae).fit(X_train)
    np.testing.assert_array_equal(refit.transform(X_test), expected)


def test_pickle_holds_the_weights_once_and_keeps_training(digits):
    X_train, X_test, _, _ = digits
    # Wide enough for the weights to outweigh the history and headers.
    ae = fast_ae(hidden_layer_sizes=(1024,), max_iter=1).fit(X_train)
    weights = io.BytesIO()
    torch.save(ae.module_.state_dict(), weights)
    blob = pickle.dumps(ae)
    # The weights plus Adam's two moment buffers: 3x. skorch alone would also
    # pickle its ``module`` argument (the same module) plainly: 4x, and a GPU
    # model then fails to unpickle without CUDA (tests/test_gpu.py).
    assert len(blob) < 3.5 * weights.getbuffer().nbytes
    restored = pickle.loads(blob)
    assert restored.net_.module is restored.net_.module_
    np.testing.assert_array_equal(restored.transform(X_test), ae.transform(X_test))
    restored.partial_fit(X_train)
    assert restored.n_iter_ == ae.n_iter_ + 1


def test_seeding_touches_no_other_device_generator(monkeypatch):
    """Only the forked generators are seeded (not every CUDA/MPS device)."""
    from sklearn_replearn._utils import seeded

    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch, "manual_seed", lambda seed: calls.append(seed))
    with seeded(0, torch.device("cpu")):
        torch.rand(1)
    assert calls == []


@pytest.mark.slow
def test_same_random_state_same_codes_and_global_rng_untouched(digits):
    X_train, X_test, _, _ = digits
    torch.manual_seed(123)
    state_before = torch.get_rng_state()
    codes_a = fast_ae(random_state=7).fit(X_train).transform(X_test)
    assert torch.equal(torch.get_rng_state(), state_before)
    codes_b = fast_ae(random_state=7).fit(X_train).transform(X_test)
    codes_c = fast_ae(random_state=8).fit(X_train).transform(X_test)
    np.testing.assert_array_equal(codes_a, codes_b)
    assert not np.allclose(codes_a, codes_c)


@pytest.mark.slow
def test_sparse_input_streams_batches_and_matches_dense(digits):
    X_train, X_test, _, _ = digits
    dense = fast_ae().fit(X_train)
    sparse = fast_ae().fit(sp.csr_matrix(X_train))
    np.testing.assert_allclose(sparse.transform(sp.csr_matrix(X_test)),
                               dense.transform(X_test), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_transform_runs_in_batches(digits):
    X_train, X_test, _, _ = digits
    ae = fast_ae(batch_size=64).fit(X_train)
    seen = []
    encode = ae.module_.encode
    ae.module_.encode = lambda batch: seen.append(len(batch)) or encode(batch)
    ae.transform(X_test)
    # Batches of whole 16-row tiles (the last one padded), so that a row's
    # code does not depend on the rows transformed with it.
    full, rest = divmod(len(X_test), 64)
    assert seen == [64] * full + ([-(-rest // 16) * 16] if rest else [])
    one, many = ae.transform(X_test[:1]), ae.transform(X_test)
    np.testing.assert_array_equal(one[0], many[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtype_follows_input(digits, dtype):
    X_train, X_test, _, _ = digits
    ae = fast_ae().fit(X_train.astype(dtype))
    assert ae.transform(X_test.astype(dtype)).dtype == dtype
    assert ae.inverse_transform(ae.transform(X_test.astype(dtype))).dtype == dtype


def test_integer_and_list_input(digits):
    X_int = (load_digits().data[:200]).astype(np.int64)
    ae = fast_ae().fit(X_int)
    assert ae.transform(X_int.tolist()).dtype == np.float64


def test_pandas_output_and_feature_names(digits):
    pd = pytest.importorskip("pandas")
    X_train, X_test, _, _ = digits
    frame = pd.DataFrame(X_train, columns=[f"pixel{i}" for i in range(64)])
    ae = fast_ae(n_components=3).set_output(transform="pandas").fit(frame)
    codes = ae.transform(frame)
    assert list(codes.columns) == [f"autoencodertransformer{i}" for i in range(3)]
    assert list(ae.feature_names_in_) == list(frame.columns)


# ------------------------------------------------------------ fitted state
def test_fitted_attributes(digits):
    X_train, _, _, _ = digits
    # Without early stopping (the default holds out a validation split).
    ae = fast_ae(max_iter=5, tol=None, early_stopping=False).fit(X_train)
    assert ae.n_iter_ == 5 and len(ae.loss_curve_) == 5
    assert ae.n_features_in_ == 64
    assert ae.components_.shape == (32, 64)
    assert not hasattr(ae, "validation_scores_")
    assert isinstance(ae.module_, torch.nn.Module)


@pytest.mark.parametrize("optimizer, fused", [
    ("adam", True), ("adamw", True), ("sgd", True), ("rmsprop", None),
    (torch.optim.Adagrad, None),  # user classes are taken as given
])
def test_fused_optimizers_where_torch_has_them(digits, optimizer, fused):
    # (torch >= 2.4 has fused CPU kernels for Adam, AdamW and SGD.)
    X_train, _, _, _ = digits
    ae = fast_ae(max_iter=2, tol=None, optimizer=optimizer).fit(X_train)
    assert ae.net_.optimizer_.defaults.get("fused") is fused
    assert np.isfinite(ae.loss_curve_).all() and ae.loss_curve_[1] < ae.loss_curve_[0]


def test_fused_support_is_probed_not_assumed():
    from sklearn_replearn._engine._optimizers import (
        _fused_works,
        fused_optimizer_kwargs,
    )

    # RMSprop takes no ``fused`` argument: the probe says no, nothing raises.
    assert _fused_works(torch.optim.RMSprop, "cpu") is False
    assert fused_optimizer_kwargs(torch.optim.Adam, "cpu", prefix="optimizer__") == {
        "optimizer__fused": True}


@pytest.mark.slow
def test_early_stopping_restores_best_weights(digits):
    X_train, _, _, _ = digits
    ae = fast_ae(early_stopping=True, n_iter_no_change=3, max_iter=300,
                 learning_rate=1e-2).fit(X_train)
    assert len(ae.validation_scores_) == ae.n_iter_ < 300
    assert ae.best_validation_score_ == max(ae.validation_scores_)
    # The kept weights are the best epoch's: recompute on the same held-out rows.
    order = np.random.RandomState(_seed_of(0)).permutation(len(X_train))
    n_valid = int(np.ceil(0.1 * len(X_train)))
    X_valid = X_train[order[:n_valid]]
    assert ae.score(X_valid) == pytest.approx(ae.best_validation_score_, rel=1e-4)


def _seed_of(random_state):
    from sklearn_replearn._utils import seed_from_random_state

    return seed_from_random_state(random_state)


def test_convergence_warning_when_max_iter_reached(digits):
    X_train, _, _, _ = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        fast_ae(max_iter=3).fit(X_train)


def test_keyboard_interrupt_leaves_a_usable_model(digits):
    X_train, X_test, _, _ = digits

    class InterruptAtEpoch3(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 3:
                raise KeyboardInterrupt

    ae = fast_ae(max_iter=50, callbacks=[InterruptAtEpoch3()]).fit(X_train)
    assert ae.n_iter_ == 3 == len(ae.loss_curve_)
    assert np.isfinite(ae.transform(X_test)).all()


def test_user_callbacks_are_used_and_not_mutated(digits):
    X_train, _, _, _ = digits

    class CountEpochs(Callback):
        def initialize(self):
            self.epochs_ = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs_ += 1

    counter = CountEpochs()
    ae = fast_ae(max_iter=4, tol=None, callbacks=[("count", counter)]).fit(X_train)
    assert dict(ae.net_.callbacks_)["count"].epochs_ == 4
    assert not hasattr(counter, "epochs_")


def test_user_encoder_and_decoder(digits):
    X_train, X_test, _, _ = digits
    encoder = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                  torch.nn.Linear(32, 5))
    decoder = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.Tanh(),
                                  torch.nn.Linear(32, 64))
    before = encoder[0].weight.detach().clone()
    ae = fast_ae(encoder=encoder, decoder=decoder, max_iter=20).fit(X_train)
    assert ae.transform(X_test).shape == (len(X_test), 5)
    assert ae.get_feature_names_out().shape == (5,)
    assert torch.equal(encoder[0].weight, before), "the user's module was trained"


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbosity(digits, capsys, verbose):
    X_train, _, _, _ = digits
    fast_ae(max_iter=3, tol=None, verbose=verbose).fit(X_train)
    captured = capsys.readouterr()
    if verbose == 0:
        assert captured.out == "" and captured.err == ""
    elif verbose == 1:
        assert "epoch" in captured.err and captured.out == ""
    else:
        assert len(re.findall(r"^\s+[123]\s", captured.out, re.M)) == 3


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "infinity"),
        (np.empty((0, 4)), "0 sample"),
        (np.arange(6.0), "Expected 2D array"),
        (np.array([["a", "b"], ["c", "d"]]), "non-numeric.*Encode categories"),
    ],
    ids=["nan", "inf", "empty", "1d", "strings"],
)
def test_bad_training_input(X, match):
    with pytest.raises(ValueError, match=match):
        fast_ae().fit(X)


def test_wrong_width_at_transform(digits):
    X_train, _, _, _ = digits
    ae = fast_ae(max_iter=2).fit(X_train)
    with pytest.raises(ValueError, match="64 features"):
        ae.transform(X_train[:, :10])
    with pytest.raises(ValueError, match="4 columns"):
        ae.inverse_transform(np.zeros((3, 7)))


def test_transform_before_fit():
    with pytest.raises(NotFittedError):
        fast_ae().transform(np.zeros((2, 3)))


def test_conv_image_shape_must_match_features(digits):
    X_train, _, _, _ = digits
    with pytest.raises(ValueError, match=r"image_shape=\(1, 7, 7\) has 49 values"):
        fast_ae(architecture="conv", image_shape=(1, 7, 7)).fit(X_train)
    with pytest.raises(ValueError, match="needs image_shape"):
        fast_ae(architecture="conv").fit(X_train)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(digits):
    X_train, _, _, _ = digits
    with pytest.raises(ValueError, match="CUDA.*device='cpu'"):
        fast_ae(device="cuda").fit(X_train)


def test_bce_needs_data_in_unit_interval():
    with pytest.raises(ValueError, match=r"loss='bce' needs data in \[0, 1\]"):
        fast_ae(loss="bce").fit(np.array([[0.0, 2.0], [1.0, 0.5]]))


def test_encoder_without_decoder(digits):
    X_train, _, _, _ = digits
    with pytest.raises(ValueError, match="both encoder and decoder"):
        fast_ae(encoder=torch.nn.Linear(64, 3)).fit(X_train)


def test_decoder_of_wrong_width(digits):
    X_train, _, _, _ = digits
    with pytest.raises(ValueError, match=r"decoder.*\(2, 64\)"):
        fast_ae(encoder=torch.nn.Linear(64, 3),
                decoder=torch.nn.Linear(3, 10)).fit(X_train)


def test_bad_hidden_layer_sizes(digits):
    X_train, _, _, _ = digits
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive"):
        fast_ae(hidden_layer_sizes=(32, 0)).fit(X_train)


def test_diverging_loss_stops_with_a_clear_error(digits):
    X_train, _, _, _ = digits
    ae = fast_ae(optimizer="sgd", learning_rate=1e3, max_iter=50)
    with pytest.raises(TrainingDivergedError, match="Lower learning_rate"):
        ae.fit(X_train * 1e3)
    assert not hasattr(ae, "net_")


def test_unpickle_maps_to_cpu_module(digits):
    """A model saved from any device loads with its module on an existing device."""
    X_train, _, _, _ = digits
    ae = fast_ae(max_iter=2).fit(X_train)
    buffer = io.BytesIO()
    pickle.dump(ae, buffer)
    restored = pickle.loads(buffer.getvalue())
    assert next(restored.module_.parameters()).device.type == "cpu"


def test_models_fit_with_progress_bar_or_early_stopping_pickle_lean(digits):
    """Fit-only state (tqdm bar, validation rows, best weights) is not kept."""
    X_train, X_test, _, _ = digits
    plain = fast_ae(max_iter=5, tol=None).fit(X_train)
    for params in ({"verbose": 1}, {"early_stopping": True}):
        ae = fast_ae(max_iter=5, tol=None, **params).fit(X_train)
        restored = pickle.loads(pickle.dumps(ae))
        np.testing.assert_array_equal(restored.transform(X_test), ae.transform(X_test))
        assert len(pickle.dumps(ae)) < 1.2 * len(pickle.dumps(plain))
    # partial_fit after an early-stopped fit trains on (no validation, no stop).
    n_iter = ae.n_iter_
    ae.partial_fit(X_train)
    assert ae.n_iter_ == n_iter + 1


def test_failed_refit_leaves_the_estimator_as_it_was(digits):
    """A fit that raises (here: divergence on new data) changes nothing."""
    X_train, X_test, _, _ = digits
    ae = fast_ae(max_iter=2).fit(X_train)
    codes, state = ae.transform(X_test), dict(vars(ae))
    ae.set_params(optimizer="sgd", learning_rate=1e3, max_iter=50)
    with pytest.raises(TrainingDivergedError):
        ae.fit(X_train[:, :10] * 1e3)
    assert vars(ae).keys() == state.keys() and ae.n_features_in_ == 64
    assert ae.net_ is state["net_"]
    np.testing.assert_array_equal(ae.transform(X_test), codes)
    with pytest.raises(ValueError, match="X has 10 features"):
        ae.transform(X_train[:, :10])


def test_validation_scores_do_not_leak_into_a_refit(digits):
    X_train, _, _, _ = digits
    ae = fast_ae(max_iter=3, tol=None, early_stopping=True).fit(X_train)
    assert len(ae.validation_scores_) == 3
    ae.set_params(early_stopping=False).fit(X_train)
    assert not hasattr(ae, "validation_scores_")
    assert not hasattr(ae, "best_validation_score_")


def test_batches_are_padded_to_whole_tiles_not_to_batch_size(digits):
    # transform padded every batch to batch_size rows: one row with
    # batch_size=10**7 took 2 s and 3 GB. Whole 16-row tiles are what a row's
    # independence from the other rows needs, so the cost follows the data.
    X_train, X_test, _, _ = digits
    ae = fast_ae(max_iter=2).fit(X_train)
    expected = ae.transform(X_test)
    ae.set_params(batch_size=10**7)
    module = ae.module_
    seen = []
    encode, decode = module.encode, module.decode
    module.encode = lambda batch: seen.append(("encode", len(batch))) or encode(
        batch)
    module.decode = lambda codes: seen.append(("decode", len(codes))) or decode(
        codes)
    one = ae.transform(X_test[:1])
    assert seen == [("encode", 16)]
    np.testing.assert_array_equal(one[0], expected[0])
    seen.clear()
    np.testing.assert_array_equal(ae.transform(X_test[:40]), expected[:40])
    assert seen == [("encode", 48)]
    seen.clear()
    ae.inverse_transform(one)
    assert seen == [("decode", 16)]
    seen.clear()
    assert np.isfinite(ae.score(X_test[:3]))
    assert seen == [("encode", 16), ("decode", 16)]


# ---------------- seeded fits in threads, user modules, one-row batches
@pytest.fixture(scope="module")
def digits_300():
    return (load_digits().data[:300] / 16.0).astype(np.float32)


def _fit_codes(X, seed):
    ae = AutoencoderTransformer(n_components=4, hidden_layer_sizes=(32,),
                                max_iter=3, tol=None, batch_size=16,
                                random_state=seed)
    return ae.fit(X).transform(X)


@pytest.mark.slow
def test_same_seed_same_model_when_fits_run_in_threads(digits_300):
    # "same random_state always gives the same result" (utils.seeded), and the
    # README's grid search on Dask workers "the same seeded fits, run
    # elsewhere": fits running concurrently in threads (joblib's threading
    # backend, Dask threads) share torch's global RNG, which seeded() seeds,
    # draws from and restores, so they draw each other's numbers.
    sequential = [_fit_codes(digits_300, seed) for seed in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        threaded = Parallel(n_jobs=4, backend="threading")(
            delayed(_fit_codes)(digits_300, seed) for seed in range(4))
    for expected, got in zip(sequential, threaded):
        np.testing.assert_array_equal(got, expected)


def test_pickle_loads_after_set_params_of_encoder(digits_300):
    # README: saved models are "rebuilt on load from the structure it was
    # fitted with", so a changed structural parameter "no longer writes a
    # file that cannot load". encoder/decoder are not in
    # _STRUCTURAL_PARAMETERS, so the module is rebuilt from the new encoder.
    ae = AutoencoderTransformer(encoder=nn.Linear(64, 4), decoder=nn.Linear(4, 64),
                                max_iter=2, random_state=0).fit(digits_300)
    codes = ae.transform(digits_300)
    ae.set_params(encoder=nn.Sequential(nn.Linear(64, 8), nn.ReLU(),
                                        nn.Linear(8, 4)))
    loaded = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(loaded.transform(digits_300), codes)


def test_partial_fit_refuses_a_changed_encoder(digits_300):
    # README: parameters that shape the model "cannot change after the first
    # call, and changing them is an error that names the parameter"; a new
    # encoder is silently ignored instead.
    ae = AutoencoderTransformer(encoder=nn.Linear(64, 4), decoder=nn.Linear(4, 64),
                                max_iter=2, random_state=0).fit(digits_300)
    ae.set_params(encoder=nn.Sequential(nn.Linear(64, 8), nn.ReLU(),
                                        nn.Linear(8, 4)))
    with pytest.raises(ValueError, match="encoder"):
        ae.partial_fit(digits_300)


@pytest.mark.parametrize("encoder, decoder", [
    (nn.Linear(10, 4), nn.Linear(4, 64)),   # encoder reads 10 features, X has 64
    (nn.Linear(64, 4), nn.Linear(5, 64)),   # decoder reads 5 values, code has 4
])
def test_custom_module_width_mismatch_is_a_clear_error(digits_300, encoder, decoder):
    # README: bad input is a ValueError/TypeError "never a torch or skorch
    # traceback"; the probe in _checked_module lets torch's RuntimeError
    # ("mat1 and mat2 shapes cannot be multiplied") through.
    ae = AutoencoderTransformer(encoder=encoder, decoder=decoder, max_iter=1)
    with pytest.raises(ValueError):
        ae.fit(digits_300)


@pytest.mark.parametrize("hidden", [(128,), (64, 32), (50,), (13,)])
def test_one_row_code_equals_its_code_in_a_batch(digits_300, hidden):
    # Batches run at whole 16-row tiles: with hidden widths that are
    # multiples of 16 (the default 128) a row's code alone is bit-identical
    # to its code in a batch. With other widths the CPU's matmul kernels
    # split a tile by its inner sizes too, and codes differ by float32
    # rounding (measured up to ~3e-8): the README says so.
    ae = AutoencoderTransformer(n_components=8, hidden_layer_sizes=hidden,
                                max_iter=1, tol=None, random_state=0).fit(digits_300)
    full = ae.transform(digits_300)
    alone = np.vstack([ae.transform(digits_300[i:i + 1]) for i in range(0, 200, 5)])
    if all(width % 16 == 0 for width in hidden):
        np.testing.assert_array_equal(alone, full[0:200:5])
    else:
        np.testing.assert_allclose(alone, full[0:200:5], rtol=0, atol=1e-6)


def test_custom_batchnorm_module_trains_when_last_batch_has_one_row(digits_300):
    # 257 valid rows with batch_size=128 leave a last training batch of one
    # row, on which a user's BatchNorm1d raises torch's ValueError ("Expected
    # more than 1 value per channel when training") in the middle of fit.
    encoder = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                            nn.Linear(32, 4))
    decoder = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 64))
    ae = AutoencoderTransformer(encoder=encoder, decoder=decoder, max_iter=2,
                                random_state=0)
    ae.fit(digits_300[:257])
    assert ae.n_iter_ == 2
