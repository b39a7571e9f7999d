"""VAETransformer on real data (sklearn's digits, scaled to [0, 1])."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback
from torch import nn

from sklearn_replearn import VAETransformer
from sklearn_replearn._utils import seed_from_random_state
from sklearn_replearn.autoencoder._modules import LOGVAR_RANGE, VAE, make_mlp
from sklearn_replearn.autoencoder._vae import _row_keyed_normal
from sklearn_replearn.datasets._suite import load as load_suite
from sklearn_replearn.exceptions import TrainingDivergedError

# The comparison runs 100 epochs; on a shared 2-core machine both
# trainings together would take minutes, so the test runs the same comparison
# for fewer epochs (benchmarks/bench_vae.py runs the full 100).
REFERENCE_EPOCHS = 30


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    X = (data.data / 16.0).astype(np.float32)
    return train_test_split(X, data.target, test_size=0.25, random_state=0)


def bernoulli_vae(**params):
    # All rows train, as in the plain torch loop (the default holds out a
    # validation split for early stopping).
    defaults = dict(n_components=8, hidden_layer_sizes=(128,), likelihood="bernoulli",
                    max_iter=REFERENCE_EPOCHS, batch_size=128, tol=None,
                    early_stopping=False, random_state=0, device="cpu")
    defaults.update(params)
    return VAETransformer(**defaults)


@pytest.fixture(scope="module")
def fitted(digits):
    X_train, _, _, _ = digits
    return bernoulli_vae().fit(X_train)


# ------------------------------------------------- the plain torch reference
def fit_plain_torch_vae(X, epochs, seed, hidden=128, n_latent=8, batch_size=128):
    """A hand-written VAE loop: Bernoulli likelihood, Adam, shuffled batches."""
    with torch.random.fork_rng():  # seeded, leaving the global RNG alone
        torch.manual_seed(seed)
        n_features = X.shape[1]
        encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(),
                                nn.Linear(hidden, 2 * n_latent))
        decoder = nn.Sequential(nn.Linear(n_latent, hidden), nn.ReLU(),
                                nn.Linear(hidden, n_features))
        optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()],
                                     lr=1e-3)
        data = torch.from_numpy(X)
        for _ in range(epochs):
            order = torch.randperm(len(data))
            for start in range(0, len(data), batch_size):
                x = data[order[start:start + batch_size]]
                mu, logvar = encoder(x).chunk(2, dim=1)
                z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
                nll = F.binary_cross_entropy_with_logits(decoder(z), x,
                                                         reduction="none").sum(1)
                kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
                loss = (nll + kl).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return encoder, decoder


def reference_elbo(encoder, decoder, X, n_draws=100):
    """Per-sample ELBO, exact KL and a 100-draw reconstruction term."""
    generator = torch.Generator().manual_seed(123)
    x = torch.from_numpy(np.asarray(X, dtype=np.float32))
    with torch.no_grad():
        mu, logvar = encoder(x).chunk(2, dim=1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        log_px = 0.0
        for _ in range(n_draws):
            eps = torch.randn(mu.shape, generator=generator)
            logits = decoder(mu + torch.exp(0.5 * logvar) * eps)
            log_px = log_px - F.binary_cross_entropy_with_logits(
                logits, x, reduction="none").sum(1)
        return (log_px / n_draws - kl).numpy().astype(np.float64)


def test_training_is_the_plain_torch_loop(digits):
    """Same seed, same draws: the engine adds nothing to the arithmetic."""
    X_train, _, _, _ = digits
    vae = bernoulli_vae(max_iter=3).fit(X_train)
    encoder, decoder = fit_plain_torch_vae(X_train, 3, seed_from_random_state(0))
    reference = [*encoder.parameters(), *decoder.parameters()]
    ours = [*vae.module_.encoder.parameters(), *vae.module_.decoder.parameters()]
    for theirs, mine in zip(reference, ours, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_heldout_elbo_matches_plain_torch_vae(digits, fitted):
    X_train, X_test, _, _ = digits
    encoder, decoder = fit_plain_torch_vae(X_train, REFERENCE_EPOCHS, seed=0)
    theirs = reference_elbo(encoder, decoder, X_test).mean()
    module = fitted.module_
    ours = reference_elbo(module.encoder, module.decoder, X_test).mean()
    # A trained 64-128-8 Bernoulli VAE on digits: about -25 nats per sample
    # (-24.5 after 100 epochs); an untrained one is near -45.
    assert -28 < theirs < -23, theirs
    assert abs(ours - theirs) / abs(theirs) < 0.03, (ours, theirs)
    # score() estimates the same ELBO with one draw per row.
    assert fitted.score(X_test) == pytest.approx(ours, rel=0.015)
    untrained = bernoulli_vae(max_iter=1).fit(X_train[:128]).score(X_test)
    assert untrained < ours - 10


# ------------------------------------------------------- scores and bounds
def test_importance_weighted_bound_is_above_the_elbo(digits, fitted):
    _, X_test, _, _ = digits
    X_test = X_test.astype(np.float64)
    elbo = fitted.score_samples(X_test)
    iwae = fitted.set_params(n_importance_samples=100).score_samples(X_test)
    fitted.set_params(n_importance_samples=1)
    log_weights = fitted._log_importance_weights(X_test, 100)
    assert np.isfinite(elbo).all() and np.isfinite(iwae).all()
    assert elbo.dtype == iwae.dtype == np.float64
    # log(mean_k w_k) >= mean_k log w_k for every sample (same draws), and
    # never more than log K above it... the bound is computed as it says:
    np.testing.assert_allclose(iwae, logsumexp(log_weights, axis=1) - np.log(100),
                               rtol=1e-10)
    assert (iwae >= log_weights.mean(axis=1)).all()
    assert (iwae <= log_weights.max(axis=1)).all()
    # ... and is tighter than the ELBO on average: about 0.3-1 nats here.
    assert iwae.mean() > elbo.mean() + 0.1, (iwae.mean(), elbo.mean())
    assert iwae.mean() - elbo.mean() < 3
    # The 100-draw ELBO estimate agrees with the one-draw one.
    assert log_weights.mean() == pytest.approx(elbo.mean(), rel=0.02)


def test_log_importance_weights_match_the_densities(digits, fitted):
    """log p(x|z) + log p(z) - log q(z|x), recomputed with scipy."""
    _, X_test, _, _ = digits
    x = torch.from_numpy(X_test[:5])
    eps = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(0))
    module = fitted.module_.eval()
    with torch.no_grad():
        ours = module.log_importance_weights(x, eps).numpy()
        mu, logvar = module.posterior(x)
        z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps
        probs = torch.sigmoid(module.decoder(z)).double().numpy()
    z, mu, sigma = z.numpy(), mu.numpy()[:, None], np.exp(0.5 * logvar.numpy())[:, None]
    x = X_test[:5, None].astype(np.float64)
    log_px = (x * np.log(probs) + (1 - x) * np.log1p(-probs)).sum(-1)
    log_pz = norm.logpdf(z).sum(-1)
    log_qz = norm.logpdf(z, loc=mu, scale=sigma).sum(-1)
    np.testing.assert_allclose(ours, log_px + log_pz - log_qz, rtol=1e-4)


def test_scores_are_per_row_and_repeatable(digits, fitted):
    _, X_test, _, _ = digits
    scores = fitted.score_samples(X_test)
    np.testing.assert_array_equal(fitted.score_samples(X_test), scores)
    np.testing.assert_allclose(fitted.score_samples(X_test[::-1][:50]),
                               scores[::-1][:50], rtol=1e-6)
    duplicated = np.vstack([X_test[:1], X_test[:1]])
    first, second = fitted.score_samples(duplicated)
    assert first == second
    assert fitted.score(X_test) == pytest.approx(scores.mean())


def test_sparse_input_scores_and_encodes_like_dense(digits, fitted):
    _, X_test, _, _ = digits
    X_sparse = sp.csr_matrix(X_test)
    np.testing.assert_allclose(fitted.score_samples(X_sparse),
                               fitted.score_samples(X_test), rtol=1e-6)
    np.testing.assert_allclose(fitted.transform(X_sparse), fitted.transform(X_test),
                               rtol=1e-6)


def test_row_keyed_draws_are_standard_normal():
    rows = np.random.RandomState(0).rand(4000, 5)
    draws = _row_keyed_normal(rows, 10, 3)
    assert draws.shape == (4000, 10, 3) and draws.dtype == np.float32
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1) < 0.01
    # Independent across rows, draws and dimensions.
    flat = draws.reshape(4000, -1)
    correlation = np.corrcoef(flat, rowvar=False)
    assert np.abs(correlation - np.eye(30)).max() < 0.08
    assert np.abs(np.corrcoef(flat[:-1].ravel(), flat[1:].ravel())[0, 1]) < 0.01
    np.testing.assert_array_equal(_row_keyed_normal(rows[7:8], 10, 3), draws[7:8])


def test_gaussian_likelihood_density():
    module = VAE(make_mlp((3, 4), "relu"), make_mlp((2, 3), "relu"), 2, 3,
                 likelihood="gaussian", noise_variance=0.5)
    x, mean = torch.randn(4, 3), torch.randn(4, 3)
    expected = norm.logpdf(x.numpy(), loc=mean.numpy(), scale=np.sqrt(0.5)).sum(1)
    np.testing.assert_allclose(module.log_likelihood(mean, x).numpy(), expected,
                               rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("noise_variance", ["learned", 1.0])
def test_gaussian_vae_on_standardized_data(digits, noise_variance):
    X_train, X_test, _, _ = digits
    scaler = StandardScaler().fit(X_train)
    vae = VAETransformer(4, hidden_layer_sizes=(32,), noise_variance=noise_variance,
                         max_iter=30, tol=None, random_state=0, device="cpu")
    vae.fit(scaler.transform(X_train))
    scores = vae.score_samples(scaler.transform(X_test))
    assert np.isfinite(scores).all()
    # Better than the best fixed Gaussian with no latent structure: 64 unit
    # variance features give -64 * 0.5 * log(2 pi e) = -90.8 nats.
    assert scores.mean() > -64 * 0.5 * np.log(2 * np.pi * np.e)
    if noise_variance == "learned":
        noise_logvar = vae.module_.noise_logvar.detach()
        assert noise_logvar.min() >= LOGVAR_RANGE[0] - 1e-6


# ------------------------------------------------------- model selection
@pytest.mark.slow
def test_grid_search_without_labels_selects_by_elbo(digits):
    X_train, _, _, _ = digits
    estimator = bernoulli_vae(max_iter=20, learning_rate=1e-2)
    cv = KFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(estimator, {"n_components": [1, 8]}, cv=cv)
    search.fit(X_train)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores < 0).all()
    assert scores[1] > scores[0] + 0.5  # 8 latents explain digits better
    assert search.best_params_ == {"n_components": 8}
    # The criterion is the held-out ELBO per sample, fold by fold.
    manual = [
        clone(estimator).set_params(n_components=8).fit(X_train[train])
        .score(X_train[test])
        for train, test in cv.split(X_train)
    ]
    assert search.best_score_ == pytest.approx(np.mean(manual), rel=1e-6)


def test_pipeline_with_logistic_regression(digits, fitted):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline([("vae", bernoulli_vae(max_iter=15)),
                     ("clf", LogisticRegression(max_iter=1000))])
    accuracy = pipe.fit(X_train, y_train).score(X_test, y_test)
    assert accuracy > 0.8, accuracy


# ------------------------------------------------------------ generation
def test_sample(digits, fitted):
    samples = fitted.sample(20, random_state=0)
    assert samples.shape == (20, 64) and samples.dtype == np.float32
    assert np.isfinite(samples).all()
    assert samples.min() >= 0 and samples.max() <= 1  # Bernoulli means
    np.testing.assert_array_equal(fitted.sample(20, random_state=0), samples)
    assert not np.allclose(fitted.sample(20, random_state=1), samples)
    assert fitted.sample().shape == (1, 64)
    # Batched generation gives the same draws' decoded means as one batch.
    assert fitted.sample(300, random_state=0).shape == (300, 64)


def test_sample_dtype_follows_training_data(digits):
    X_train, _, _, _ = digits
    vae = bernoulli_vae(max_iter=1).fit(X_train.astype(np.float64))
    assert vae.sample(3, random_state=0).dtype == np.float64


def test_sample_leaves_global_rng_alone(fitted):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    fitted.sample(5, random_state=0)
    fitted.score_samples(np.full((2, 64), 0.5))
    torch.testing.assert_close(torch.rand(3), expected)


def test_sample_before_fit_and_bad_n_samples(fitted):
    with pytest.raises(NotFittedError):
        VAETransformer().sample(3)
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        fitted.sample(0)


# ------------------------------------------------------ training details
def test_history_records_reconstruction_and_kl(digits, fitted):
    assert len(fitted.reconstruction_curve_) == len(fitted.kl_curve_) == 30
    assert fitted.net_.history[-1, "train_kl"] == fitted.kl_curve_[-1]
    # beta=1, no warm-up: the loss is exactly KL - E[log p(x|z)].
    np.testing.assert_allclose(
        fitted.loss_curve_,
        np.subtract(fitted.kl_curve_, fitted.reconstruction_curve_), rtol=1e-5)
    assert fitted.reconstruction_curve_[-1] > fitted.reconstruction_curve_[0]
    assert all(kl > 0 for kl in fitted.kl_curve_)


class RecordKLWeight(Callback):
    def initialize(self):
        self.weights = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.weights.append(net.module_.kl_weight)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_kl_warmup_anneals_beta_and_delays_stopping(digits):
    X_train, _, _, _ = digits
    vae = bernoulli_vae(beta=2.0, kl_warmup=4, max_iter=6, callbacks=[RecordKLWeight()])
    vae.fit(X_train[:256])
    recorder = dict(vae.net_.callbacks_)["RecordKLWeight"]
    np.testing.assert_allclose(recorder.weights, [0, 0.5, 1, 1.5, 2, 2])
    # The loss rises while beta grows; tol/n_iter_no_change must not stop it.
    stopped = bernoulli_vae(kl_warmup=8, max_iter=12, tol=1e-4, n_iter_no_change=2)
    assert stopped.fit(X_train[:256]).n_iter_ > 8


def test_partial_fit_continues_training(digits):
    X_train, X_test, _, _ = digits
    vae = bernoulli_vae()
    vae.partial_fit(X_train)
    first = vae.score(X_test)
    for _ in range(4):
        vae.partial_fit(X_train)
    assert vae.n_iter_ == 5 and len(vae.kl_curve_) == 5
    assert vae.score(X_test) > first


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_on_the_validation_elbo(digits):
    X_train, _, _, _ = digits
    vae = bernoulli_vae(early_stopping=True, max_iter=8, tol=0.0).fit(X_train)
    assert len(vae.validation_scores_) == vae.n_iter_
    assert vae.best_validation_score_ == max(vae.validation_scores_)


def test_auto_budget_counts_twice_the_autoencoders_steps():
    vae = VAETransformer(batch_size=100)
    # 10,000 steps: 100 epochs of 100 steps; 2,000 (the most) of one step.
    assert vae._epoch_budget(10_000) == 100
    assert vae._epoch_budget(100) == 2_000
    assert vae._epoch_budget(10**7) == 20  # at least 20 epochs


@pytest.mark.slow
def test_default_patience_trains_the_gaussian_vae_past_pca_on_suite_digits():
    """The default patience (chosen by benchmarks/bench_vae_regularisation.py)
    trains through the held-out ELBO's plateaus: on 600 rows of the suite's
    digits the VAE then beats probabilistic PCA's held-out log-likelihood by
    about 0.5 nats per feature and PCA's reconstruction error, within its
    epoch budget. Patience 10 (with a 5,000-step budget) stops at about 0.3
    nats per feature and an error above PCA's."""
    X_train, X_test = load_suite("digits", max_train=600)[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        vae = VAETransformer(16, random_state=0, device="cpu").fit(X_train)
    pca = PCA(16, svd_solver="full").fit(X_train)
    # Differences of log-densities per feature do not depend on X's units.
    gain = (vae.score(X_test) - pca.score(X_test)) / X_train.shape[1]
    assert gain > 0.42

    def error(model):
        return np.mean((model.inverse_transform(model.transform(X_test)) - X_test) ** 2)

    assert error(vae) < error(pca)


@pytest.mark.slow
def test_conv_architecture_on_digit_images(digits):
    X_train, X_test, _, _ = digits
    params = dict(architecture="conv", image_shape=(1, 8, 8),
                  hidden_layer_sizes=(8, 16))
    untrained = bernoulli_vae(max_iter=1, **params).fit(X_train[:128])
    vae = bernoulli_vae(max_iter=15, **params).fit(X_train)
    assert vae.transform(X_test).shape == (len(X_test), 8)
    assert vae.inverse_transform(vae.transform(X_test)).shape == X_test.shape
    assert vae.sample(4, random_state=0).shape == (4, 64)
    assert vae.score(X_test) > untrained.score(X_test) + 5


def test_user_encoder_and_decoder(digits):
    X_train, X_test, _, _ = digits
    encoder = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 6))
    decoder = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 64))
    vae = bernoulli_vae(n_components=3, encoder=encoder, decoder=decoder,
                        max_iter=3).fit(X_train)
    assert vae.transform(X_test).shape == (len(X_test), 3)
    assert vae.module_.encoder is not encoder


# ------------------------------------------------- numerical safety
def test_log_variance_is_clamped():
    encoder = nn.Linear(4, 4)
    with torch.no_grad():
        encoder.weight.zero_()
        encoder.bias.copy_(torch.tensor([0.0, 0.0, 1e4, -1e4]))
    module = VAE(encoder, nn.Linear(2, 4), 2, 4, likelihood="bernoulli")
    x = torch.rand(3, 4)
    _, logvar = module.posterior(x)
    assert logvar.max() == LOGVAR_RANGE[1] and logvar.min() == LOGVAR_RANGE[0]
    assert torch.isfinite(module.elbo(x)).all()
    assert torch.isfinite(module.log_importance_weights(x, torch.randn(5, 2))).all()
    assert torch.isfinite(module.loss(module(x), x))


def test_diverging_loss_stops_with_a_clear_error(digits):
    X_train, _, _, _ = digits
    vae = bernoulli_vae(likelihood="gaussian", noise_variance=1.0, max_iter=5)
    with pytest.raises(TrainingDivergedError, match="Lower learning_rate"):
        vae.fit(X_train * 1e20)
    assert not hasattr(vae, "net_")


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[0.0, np.nan], [1.0, 0.5]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 0.5]]), "infinity"),
        (np.empty((0, 4)), "0 sample"),
        (np.arange(6.0), "Expected 2D array"),
        (np.array([["a", "b"], ["c", "d"]]), "non-numeric.*Encode categories"),
        (np.array([[0.0, 2.0], [1.0, 0.5]]),
         r"likelihood='bernoulli' needs data in \[0, 1\]; X ranges over \[0, 2\]"),
    ],
    ids=["nan", "inf", "empty", "1d", "strings", "outside-unit-interval"],
)
def test_bad_training_input(X, match):
    with pytest.raises(ValueError, match=match):
        bernoulli_vae(max_iter=1).fit(X)


def test_bad_input_after_fit(fitted, digits):
    _, X_test, _, _ = digits
    with pytest.raises(ValueError, match="64 features"):
        fitted.transform(X_test[:, :10])
    with pytest.raises(ValueError, match="64 features"):
        fitted.score_samples(X_test[:, :10])
    with pytest.raises(ValueError, match="8 columns"):
        fitted.inverse_transform(np.zeros((3, 7)))
    with pytest.raises(ValueError, match="needs data in"):
        fitted.score(X_test - 1)
    with pytest.raises(ValueError, match="n_importance_samples' parameter .* must be"):
        fitted.set_params(n_importance_samples=0).score(X_test)
    fitted.set_params(n_importance_samples=1)


def test_encoder_of_wrong_width(digits):
    X_train, _, _, _ = digits
    vae = bernoulli_vae(n_components=3, encoder=nn.Linear(64, 3),
                        decoder=nn.Linear(3, 64))
    with pytest.raises(ValueError, match=r"2 \* n_components = 6 columns"):
        vae.fit(X_train)
    with pytest.raises(ValueError, match="both encoder and decoder"):
        bernoulli_vae(encoder=nn.Linear(64, 16)).fit(X_train)


def test_conv_needs_matching_image_shape(digits):
    X_train, _, _, _ = digits
    with pytest.raises(ValueError, match=r"image_shape=\(1, 7, 7\) has 49 values"):
        bernoulli_vae(architecture="conv", image_shape=(1, 7, 7)).fit(X_train)


# ---- review findings of 2026-11-27 (each test failed before its fix) ----
def _small_vae(**params):
    defaults = dict(n_components=2, hidden_layer_sizes=(16,), max_iter=3,
                    random_state=0, device="cpu")
    defaults.update(params)
    return VAETransformer(**defaults)


@pytest.fixture(scope="module")
def scaled_digits():
    return load_digits().data / 16.0


# --- 1. score_samples checks the current `likelihood`, not the fitted one --
def test_score_checks_the_likelihood_the_model_was_fitted_with(scaled_digits):
    """set_params(likelihood=...) after fit must not change what score does:
    the net keeps the likelihood it was built with (and is rebuilt with it on
    load), so the [0, 1] check must follow the fitted likelihood too.

    Measured: a Bernoulli model after set_params(likelihood="gaussian")
    scored standardized data (range [-2.8, 13.9]) as -44.05 with binary
    cross-entropy on targets outside [0, 1], without an error; a Gaussian
    model after set_params(likelihood="bernoulli") refused its own data.
    """
    X = scaled_digits[:300]
    X_std = (X - X.mean(0)) / (X.std(0) + 1e-3)

    bernoulli = _small_vae(likelihood="bernoulli").fit(X)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli.score(X_std)
    bernoulli.set_params(likelihood="gaussian")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli.score(X_std)

    gaussian = _small_vae().fit(X_std)
    expected = gaussian.score(X_std)
    gaussian.set_params(likelihood="bernoulli")
    assert gaussian.score(X_std) == expected


# --- 3. a fixed noise_variance is silently clamped -------------------------
def test_fixed_noise_variance_is_used_or_refused(scaled_digits):
    """noise_variance accepts any positive float, but the likelihood clamps
    its log to [-20, 10]: noise_variance=1e8 is silently computed as
    exp(10) ~ 2.2e4.

    With variance 1e8 every feature costs at least 0.5 * log(2 pi 1e8) nats,
    so the ELBO is at most -648.3 on the 64 digit features (the KL is >= 0).
    Measured: -378.8, the same as noise_variance=1e6 and exp(10). Values
    outside [exp(-20), exp(10)] are now refused; inside, they are used.
    """
    X = scaled_digits[:200]
    with pytest.raises(ValueError, match="noise_variance"):
        _small_vae(noise_variance=1e8, max_iter=2).fit(X)
    vae = _small_vae(noise_variance=1e4, max_iter=2).fit(X)
    bound = -0.5 * X.shape[1] * np.log(2 * np.pi * 1e4)
    assert vae.score(X) <= bound + 1e-3


# --- 4. best_validation_score_ can come from a KL warm-up epoch ------------
def test_best_validation_score_is_that_of_the_kept_weights(scaled_digits):
    """Docstring: best_validation_score_ is the best of validation_scores_ and
    "its weights are the ones kept". With kl_warmup, the kept weights are the
    best epoch after the warm-up (the KL weight is below beta before), but
    best_validation_score_ is the maximum over all epochs.

    Measured: best_validation_score_ -24.831 from warm-up epoch 9 (KL weight
    0.8), while the weights kept are epoch 11's (-25.141).
    """
    vae = VAETransformer(
        n_components=8, hidden_layer_sizes=(64,), likelihood="bernoulli",
        kl_warmup=10, learning_rate=1e-2, early_stopping=True,
        n_iter_no_change=1, max_iter=40, random_state=0, device="cpu",
    ).fit(scaled_digits)
    after_warmup = vae.validation_scores_[vae.kl_warmup:]
    assert after_warmup, "no epoch after the warm-up"
    assert vae.best_validation_score_ == max(after_warmup)


# --- 5. inverse_transform accepts codes beyond float32 and returns NaN -----
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_inverse_transform_refuses_codes_beyond_float32(scaled_digits, likelihood):
    """README, Errors and guarantees: values beyond float32 are a clear
    ValueError. inverse_transform(np.full((2, 2), 1e39)) returned 128 NaNs.
    """
    vae = _small_vae(likelihood=likelihood, max_iter=1).fit(scaled_digits[:200])
    with pytest.raises(ValueError, match="float32"):
        vae.inverse_transform(np.full((2, 2), 1e39))


def test_batches_are_padded_to_whole_tiles_not_to_batch_size(scaled_digits):
    # transform and score_samples padded every batch to batch_size rows:
    # one row with batch_size=10**7 took 2 s and 3 GB. Whole 16-row tiles are
    # what a row's independence from the other rows needs.
    vae = _small_vae(max_iter=2).fit(scaled_digits[:300])
    X = scaled_digits[300:400]
    codes, scores = vae.transform(X), vae.score_samples(X)
    vae.set_params(batch_size=10**7)
    module = vae.module_
    seen = []
    encode, elbo = module.encode, module.elbo
    module.encode = lambda batch: seen.append(("encode", len(batch))) or encode(
        batch)
    module.elbo = lambda batch, eps: seen.append(("elbo", len(batch))) or elbo(
        batch, eps)
    np.testing.assert_array_equal(vae.transform(X[:1]), codes[:1])
    assert seen == [("encode", 16)]
    seen.clear()
    np.testing.assert_array_equal(vae.score_samples(X[:20]), scores[:20])
    assert seen[0] == ("elbo", 32)
