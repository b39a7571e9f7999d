"""The PCA-anchored autoencoder (``init="pca"``) and the training budget.

On suite data (``benchmarks/bench_quality.py``): the default autoencoder
never reconstructs held-out rows worse than PCA at the same width, and a
linear one reaches PCA.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from sklearn_replearn import AutoencoderTransformer, VAETransformer
from sklearn_replearn.autoencoder._modules import (
    AnchoredDecoder,
    AnchoredEncoder,
    anchor_on_pca,
    make_mlp,
)
from sklearn_replearn.autoencoder._pca_start import pca_start, residual_variance

# The network computes in float32 and PCA in float64: "no worse than PCA"
# allows this relative slack.
FLOAT32_SLACK = 1e-3


@pytest.fixture(scope="module")
def faces():
    """skimage's lfw_subset: 200 images 25x25, 100 faces then 100 non-faces."""
    skimage_data = pytest.importorskip("skimage.data")
    images = skimage_data.lfw_subset()
    X = images.reshape(len(images), -1).astype(np.float32)
    y = np.r_[np.ones(100, dtype=int), np.zeros(100, dtype=int)]
    X_train, X_test, _, _ = train_test_split(X, y, test_size=0.5, stratify=y,
                                             random_state=0)
    return X_train, X_test


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, _, _ = train_test_split(
        (X / 16.0).astype(np.float32), y, test_size=0.3, stratify=y,
        random_state=0)
    return X_train, X_test


def exact_pca(n_components):
    # With more than 500 features PCA's "auto" solver is randomised and
    # unseeded: it misses the optimum by up to ~0.1%, a different amount on
    # every run, which is as large as the slack below.
    return PCA(n_components, svd_solver="full")


def ratio_to_pca(model, X_train, X_test, n_components):
    pca = exact_pca(n_components).fit(X_train)

    def mse(m):
        return np.mean((m.inverse_transform(m.transform(X_test)) - X_test) ** 2,
                       dtype=np.float64)

    return mse(model) / mse(pca)


# ------------------------------------------------------------ torch modules
def test_anchored_pair_starts_at_pca_reconstruction(faces):
    X_train, X_test = faces
    mean, scale, components = pca_start(X_train, 8, seed=0)
    encoder = AnchoredEncoder(625, 8, make_mlp((625, 32, 8), "relu"))
    decoder = AnchoredDecoder(8, 625, make_mlp((8, 32, 625), "relu"))
    anchor_on_pca(encoder, decoder, mean, scale, components)
    with torch.no_grad():
        out = decoder(encoder(torch.from_numpy(X_test))).numpy()
    pca = PCA(8).fit(X_train)
    # The network computes in float32 through 625-wide products, and PCA in
    # float64: the pixels (in [0, 1]) agree to about 1e-4, a little more on
    # some CPUs and thread counts (1.5e-4 seen); a wrong anchor is off by
    # the pixels' own scale.
    np.testing.assert_allclose(out, pca.inverse_transform(pca.transform(X_test)),
                               atol=5e-4)
    # One scale for all features: the squared error keeps X's weighting.
    assert encoder.scale.ndim == 0
    assert float(encoder.scale) == pytest.approx(
        np.sqrt(X_train.astype(np.float64).var(axis=0).mean()), rel=1e-5)


def test_residual_variance_is_what_pca_leaves(digits):
    X_train, _ = digits
    mean, _, components = pca_start(X_train, 5, seed=0)
    pca = PCA(5).fit(X_train)
    left = X_train - pca.inverse_transform(pca.transform(X_train))
    np.testing.assert_allclose(residual_variance(X_train, mean, components),
                               (left.astype(np.float64) ** 2).mean(axis=0),
                               rtol=1e-4, atol=1e-9)


# ------------------------------------------------------------ PCA bound
@pytest.mark.parametrize("data", ["faces", "digits"])
def test_linear_autoencoder_within_one_percent_of_pca(data, request):
    X_train, X_test = request.getfixturevalue(data)
    ae = AutoencoderTransformer(16, hidden_layer_sizes=(), random_state=0,
                                device="cpu").fit(X_train)
    assert ratio_to_pca(ae, X_train, X_test, 16) <= 1.01


def test_default_autoencoder_no_worse_than_pca_on_faces(faces):
    X_train, X_test = faces
    with warnings.catch_warnings():
        # No ConvergenceWarning at the defaults.
        warnings.simplefilter("error", ConvergenceWarning)
        ae = AutoencoderTransformer(16, random_state=0, device="cpu").fit(X_train)
    assert ratio_to_pca(ae, X_train, X_test, 16) <= 1 + FLOAT32_SLACK


@pytest.mark.slow
def test_default_autoencoder_beats_pca_on_digits(digits):
    X_train, X_test = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ae = AutoencoderTransformer(16, random_state=0, device="cpu").fit(X_train)
    assert ratio_to_pca(ae, X_train, X_test, 16) <= 1 + FLOAT32_SLACK
    # Here the nonlinear refinement is kept: well below PCA.
    assert ratio_to_pca(ae, X_train, X_test, 16) < 0.8


@pytest.mark.slow
def test_default_patience_lets_the_refinement_pass_pca_on_few_rows(digits):
    # On 600 rows the refinement's validation error passes PCA's only after
    # tens of epochs; a patience of 10 stops at the PCA start (ratio 1.0).
    X_train, X_test = digits
    ae = AutoencoderTransformer(16, random_state=0, device="cpu").fit(X_train[:600])
    assert ratio_to_pca(ae, X_train[:600], X_test, 16) < 0.8


@pytest.mark.slow
def test_default_dropout_wins_the_nested_cv_on_digits():
    """The inner folds of ``benchmarks/bench_regularisation.py`` on the
    digits (2-fold twice, 1,000 training rows, 500 per fold): the default
    dropout reconstructs the held-out folds better than no dropout, on the
    mean over the folds, and never worse than PCA."""
    from sklearn.model_selection import RepeatedKFold

    from sklearn_replearn.datasets._suite import load

    X_train = load("digits", 1000, 1000)[0]
    assert AutoencoderTransformer().dropout == 0.1
    ratios = {0.1: [], 0.0: []}
    folds = RepeatedKFold(n_splits=2, n_repeats=2, random_state=0).split(X_train)
    for seed, (fit, held) in enumerate(folds):
        for dropout in ratios:
            ae = AutoencoderTransformer(16, dropout=dropout, random_state=seed,
                                        device="cpu").fit(X_train[fit])
            ratios[dropout].append(ratio_to_pca(ae, X_train[fit],
                                                X_train[held], 16))
    assert max(ratios[0.1]) <= 1 + FLOAT32_SLACK
    assert np.mean(ratios[0.1]) < np.mean(ratios[0.0])


def test_pca_bound_holds_in_any_units(faces):
    """X in other units (x 1000, shifted) gives the same relative error, and
    inverse_transform returns those units."""
    X_train, X_test = faces
    shifted = [1000 * X + 5 for X in (X_train, X_test)]
    ae = AutoencoderTransformer(16, hidden_layer_sizes=(), random_state=0,
                                device="cpu").fit(shifted[0])
    assert ratio_to_pca(ae, *shifted, 16) <= 1 + FLOAT32_SLACK


def test_kept_pca_start_reports_its_validation_score(faces):
    X_train, _ = faces
    ae = AutoencoderTransformer(16, random_state=0, device="cpu").fit(X_train)
    assert ae.best_validation_score_ >= max(ae.validation_scores_)


def test_random_init_is_the_plain_mlp(faces):
    X_train, _ = faces
    ae = AutoencoderTransformer(4, init="random", max_iter=2, random_state=0,
                                device="cpu").fit(X_train)
    assert isinstance(ae.module_.encoder, torch.nn.Sequential)
    anchored = AutoencoderTransformer(4, max_iter=2, random_state=0,
                                      device="cpu").fit(X_train)
    assert isinstance(anchored.module_.encoder, AnchoredEncoder)
    # components_ shows the nonlinear path's first-layer filters.
    assert anchored.components_.shape == (128, 625)


# ------------------------------------------------------------------ budget
def test_auto_budget_counts_gradient_steps():
    ae = AutoencoderTransformer(batch_size=100)
    # 5,000 steps: 50 epochs of 100 steps, 2,000 (the most) of one step.
    assert ae._epoch_budget(10_000) == 50
    assert ae._epoch_budget(100) == 2_000
    assert ae._epoch_budget(10**7) == 20  # at least 20 epochs
    assert ae.set_params(max_iter=7)._epoch_budget(100) == 7


def test_vae_noise_variance_starts_at_pca_residual(faces):
    X_train, _ = faces
    vae = VAETransformer(4, max_iter=1, early_stopping=False, tol=None,
                         random_state=0, device="cpu", learning_rate=1e-12)
    vae.fit(X_train)
    mean, scale, components = pca_start(X_train, 4, seed=0)
    expected = np.log(np.maximum(residual_variance(X_train, mean, components),
                                 1e-2 * scale**2))
    noise = vae.module_.noise_logvar.detach().numpy()
    np.testing.assert_allclose(noise, expected, atol=1e-3)


@pytest.mark.slow
def test_default_vae_converges_on_faces(faces):
    X_train, X_test = faces
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        vae = VAETransformer(16, random_state=0, device="cpu").fit(X_train)
    assert vae.n_iter_ < vae._epoch_budget(90)


def test_exact_pca_start_is_not_taken_for_divergence(digits):
    """With n_components >= n_features the start reconstructs X exactly (a
    first loss of ~0); training noise must not read as an explosion."""
    X_train, X_test = digits
    X_small = X_train[:, 18:22]  # four pixels that vary
    ae = AutoencoderTransformer(8, max_iter=3, random_state=0,
                                device="cpu").fit(X_small)
    error = np.mean((ae.inverse_transform(ae.transform(X_test[:, 18:22]))
                     - X_test[:, 18:22]) ** 2)
    assert error < 1e-3 * X_small.var()
