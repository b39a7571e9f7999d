"""VAETransformer: a variational autoencoder's posterior mean as features."""

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_is_fitted

from .._utils import (
    as_tensor,
    fixed_batch_rows,
    iter_row_batches,
    padded_rows,
    seeded,
    to_numpy,
)
from .._utils._sklearn_compat import Interval, StrOptions
from ..base import _check_squares_fit_float32, _check_unit_interval
from ._base import BaseNeuralTransformer
from ._modules import VAE
from ._modules._vae import LOGVAR_RANGE
from ._pca_start import pca_start, residual_variance

__all__ = ["VAETransformer"]

# Scoring draws z from a counter-based generator keyed by the row's content:
# each row gets its own independent standard normal draws, the same on every
# call, whatever the other rows, their order or the batch size, and scoring
# leaves torch's global RNG untouched.
_SCORING_SEED = np.uint64(0x5EED)

# The learned noise variances start at least at this share of the features'
# mean variance: features constant in the training rows would otherwise
# start near zero variance, and held-out rows that vary there score badly.
_NOISE_FLOOR = 1e-2
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(values):
    """SplitMix64's output function (a bijective 64-bit mixer), elementwise."""
    with np.errstate(over="ignore"):
        z = values + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _row_keyed_normal(rows, n_draws, n_components):
    """Standard normal draws of shape (n_rows, n_draws, n_components) per row.

    Each row's draws depend only on the row's float32 values (a hash of them
    keys a counter-based generator, Box-Muller turns pairs of uniforms into
    normals), so identical rows get identical draws and distinct rows
    independent ones.
    """
    bits = np.ascontiguousarray(rows, dtype=np.float32).view(np.uint32)
    n_rows, n_features = bits.shape
    with np.errstate(over="ignore"):
        position = np.arange(n_features, dtype=np.uint64) * _GOLDEN
        keys = _splitmix64(bits.astype(np.uint64) ^ position).sum(
            axis=1, dtype=np.uint64)
        keys = _splitmix64(keys ^ _SCORING_SEED)
        counters = np.arange(2 * n_draws * n_components, dtype=np.uint64) * _GOLDEN
        uniforms = _splitmix64(keys[:, None] + counters)
    # 53 random bits -> a uniform in (0, 1), never 0 (log below).
    uniforms = ((uniforms >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    uniforms = uniforms.reshape(n_rows, n_draws, n_components, 2)
    radius = np.sqrt(-2.0 * np.log(uniforms[..., 0]))
    return (radius * np.cos(2.0 * np.pi * uniforms[..., 1])).astype(np.float32)


class VAETransformer(BaseNeuralTransformer):
    """Variational autoencoder whose posterior mean is the learned representation.

    Read more in the :ref:`User Guide <guide-vae>`.

    The encoder maps each sample x to a Gaussian posterior q(z | x) over
    ``n_components`` latent variables (mean ``mu`` and variance); the decoder
    maps a latent code z to the parameters of p(x | z). Both are trained
    together by maximising the evidence lower bound (ELBO)
    ``E_q[log p(x | z)] - KL(q(z | x) || N(0, I))``, with z drawn by the
    reparameterisation trick ``z = mu + sigma * eps`` so that gradients flow
    through the draw. ``transform`` returns ``mu`` (deterministic),
    ``inverse_transform`` the decoder's mean, ``sample`` draws new data from
    the prior and ``score`` is the mean ELBO per sample, in nats.

    Posterior log-variances are clamped to ``[-20, 10]`` (and so is the
    learned Gaussian noise log-variance), which keeps every term finite.

    Parameters
    ----------
    n_components : int, default=2
        Number of latent variables (the width of ``transform``'s output).
    hidden_layer_sizes : array-like of int, default=(128,)
        Widths of the encoder's hidden layers (the decoder mirrors them). For
        ``architecture="conv"``, the channels of each stride-2 convolution.
    activation : {"relu", "tanh", "logistic", "identity", "leaky_relu", "elu", \
"gelu", "silu"}, default="relu"
        Activation between layers (never on the posterior parameters or the
        decoder's output).
    architecture : {"mlp", "conv"}, default="mlp"
        Fully connected layers, or convolutions over images given as flat rows
        of length ``C * H * W`` (``image_shape`` required).
    image_shape : tuple of int, default=None
        ``(C, H, W)`` of one image, for ``architecture="conv"``.
    encoder, decoder : torch.nn.Module, default=None
        Your own networks: the encoder maps ``(batch, n_features)`` to
        ``(batch, 2 * n_components)`` (posterior means, then log-variances),
        the decoder ``(batch, n_components)`` to ``(batch, n_features)``
        (Bernoulli logits or the Gaussian mean). Both must be given; they are
        copied at fit.
    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        The decoder's distribution p(x | z): Gaussian (any real data; see
        ``noise_variance``), or Bernoulli on logits for data in [0, 1]
        (binary or grey levels such as scaled pixel intensities).
    noise_variance : "learned" or float, default="learned"
        Variance of the Gaussian likelihood: one value per feature learned with
        the networks, or a fixed value between ``exp(-20)`` (about 2.1e-9) and
        ``exp(10)`` (about 2.2e4) (1.0 makes the reconstruction term half the
        squared error). Ignored for ``likelihood="bernoulli"``. The learned
        variances start at PCA's residual variance per feature at this width
        (probabilistic PCA's noise, floored at 1% of the data's variance), so
        the fit follows the data's scale.
    beta : float, default=1.0
        Weight of the KL term in the training objective (beta-VAE; 1 is the
        ELBO). Scores always use the ELBO itself.
    kl_warmup : int, default=0
        Epochs over which the KL weight is annealed linearly from 0 to
        ``beta``. Early stopping and the ``tol`` rule start after them.
    n_importance_samples : int, default=1
        Posterior draws per sample in ``score``/``score_samples``: 1 gives the
        ELBO, K > 1 the importance-weighted bound (Burda et al.), a tighter
        lower bound on log p(x) that is never below the ELBO estimated from the
        same draws. It can be changed after fitting.
    max_iter : int or "auto", default="auto"
        Maximum number of epochs (passes over the data). "auto": the epochs
        that make about 10,000 gradient steps (``ceil(n_train / batch_size)``
        steps per epoch), at least 20 and at most 2,000, so that a small data
        set trains as many steps as a large one; the stopping rule usually
        ends training sooner.
    batch_size : int, default=128
        Samples per minibatch, for training and for batched inference.
    learning_rate : float, default=1e-3
        Optimizer step size.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"} or torch optimizer class, \
default="adam"
        The optimizer.
    weight_decay : float, default=0.0
        L2 penalty passed to the optimizer.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, stop when its loss (the
        negative ELBO) has not improved for ``n_iter_no_change`` epochs and
        restore the best weights (the training ELBO keeps rising long after
        the held-out one has peaked). False trains on all data until the
        training loss plateaus (``tol``) or ``max_iter``.
    validation_fraction : float in (0, 1), default=0.1
        Share held out when ``early_stopping=True``.
    n_iter_no_change : int, default=50
        Epochs without a relative improvement of ``tol`` before stopping. The
        held-out ELBO is noisy (one posterior draw per row) and keeps rising
        slowly after plateaus of tens of epochs, so the VAE waits longer than
        the autoencoder.
    tol : float or None, default=1e-4
        Relative improvement of the monitored loss (validation loss with early
        stopping, else training loss) that counts as progress. None trains
        exactly ``max_iter`` epochs.
    callbacks : list of skorch callbacks, default=None
        Passed to the skorch net (e.g. ``LRScheduler``, ``Checkpoint``); they are
        copied at fit.
    device : str or torch.device, default="auto"
        "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    autocast : bool, default=False
        Run training's forward passes in bfloat16 (``torch.autocast``) where
        the hardware computes it natively: a CPU with AVX512-BF16 or AMX-BF16,
        or a CUDA device that supports bfloat16. Weights, gradients, the loss
        and ``transform`` stay in float32; elsewhere training runs in float32
        whatever this says (``SKLEARN_REPLEARN_CPU_BF16=0`` or ``1`` overrides
        the CPU detection). Off by default: the ELBO's gradients are noisier
        in bfloat16, and the fit stops at a lower held-out ELBO (see the
        benchmarks page). Ignored with an ``accelerator`` (its
        ``mixed_precision`` decides).
    accelerator : accelerate.Accelerator, default=None
        Train through Hugging Face Accelerate (skorch's ``AccelerateMixin``):
        mixed precision (``Accelerator(mixed_precision="bf16")``), gradient
        accumulation, and multi-GPU data parallelism when the script is run
        with ``accelerate launch``. The accelerator places the model: leave
        ``device="auto"``. The fitted model is unwrapped, so it pickles and
        clones as usual. Needs the ``scale`` extra.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and the posterior draws of
        training. torch's global RNG is left untouched.
    verbose : int, default=0
        0 silent, 1 a progress bar over epochs, 2 a line per epoch.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when X has string column names.
    n_iter_ : int
        Epochs trained (all ``fit``/``partial_fit`` calls since the last fit).
    loss_curve_ : list of float
        Training objective of each epoch: the negative ELBO with the KL term
        weighted as during that epoch, in nats per sample.
    reconstruction_curve_ : list of float
        Mean reconstruction log-likelihood E_q[log p(x | z)] of each epoch
        (minus ``net_.history[:, "train_nll"]``).
    kl_curve_ : list of float
        Mean KL(q(z | x) || p(z)) of each epoch (also
        ``net_.history[:, "train_kl"]``).
    validation_scores_ : list of float
        Minus the validation loss of each epoch (only with early stopping).
    best_validation_score_ : float
        Best of ``validation_scores_`` (only with early stopping); its weights
        are the ones kept.
    net_ : skorch.NeuralNet
        The trained skorch net.
    module_ : sklearn_replearn.autoencoder._modules.VAE
        The trained VAE module (``net_.module_``).

    See Also
    --------
    AutoencoderTransformer : A deterministic autoencoder.
    sklearn.decomposition.FactorAnalysis : The linear-Gaussian latent model.

    References
    ----------
    Kingma, D. P., & Welling, M. (2014). Auto-encoding variational Bayes. ICLR.

    Burda, Y., Grosse, R., & Salakhutdinov, R. (2016). Importance weighted
    autoencoders. ICLR.

    Higgins, I. et al. (2017). beta-VAE: Learning basic visual concepts with a
    constrained variational framework. ICLR.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_replearn import VAETransformer
    >>> X = np.random.RandomState(0).rand(50, 8)
    >>> vae = VAETransformer(n_components=2, likelihood="bernoulli", max_iter=5,
    ...                      random_state=0)
    >>> vae.fit_transform(X).shape
    (50, 2)
    >>> vae.score_samples(X).shape
    (50,)
    >>> vae.sample(4, random_state=0).shape
    (4, 8)
    """

    _parameter_constraints: dict = {
        **BaseNeuralTransformer._parameter_constraints,
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        # The likelihood's log-variance is clamped to LOGVAR_RANGE: a fixed
        # value outside it would be scored as the nearest bound, silently.
        "noise_variance": [StrOptions({"learned"}),
                           Interval(Real, math.exp(LOGVAR_RANGE[0]),
                                    math.exp(LOGVAR_RANGE[1]), closed="both")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "kl_warmup": [Interval(Integral, 0, None, closed="left")],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=(128,),
        activation="relu",
        architecture="mlp",
        image_shape=None,
        encoder=None,
        decoder=None,
        likelihood="gaussian",
        noise_variance="learned",
        beta=1.0,
        kl_warmup=0,
        n_importance_samples=1,
        max_iter="auto",
        batch_size=128,
        learning_rate=1e-3,
        optimizer="adam",
        weight_decay=0.0,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=50,
        tol=1e-4,
        callbacks=None,
        device="auto",
        autocast=False,
        accelerator=None,
        random_state=None,
        verbose=0,
    ):
        self._set_shared_parameters(locals())
        self.likelihood = likelihood
        self.noise_variance = noise_variance
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.n_importance_samples = n_importance_samples

    _STRUCTURAL_PARAMETERS = (
        *BaseNeuralTransformer._STRUCTURAL_PARAMETERS, "likelihood", "noise_variance",
    )

    # The stochastic objective's gradients are noisy: the held-out ELBO keeps
    # improving for about twice the autoencoder's 5,000 steps, and a patience
    # of 50 epochs would meet that budget on a thousand rows.
    _auto_steps = 10_000

    # ---------------------------------------------------------------- hooks
    def _check_training_values(self, X):
        self._check_likelihood_support(X)

    def _check_likelihood_support(self, X, *, fitted=False):
        # Scoring checks X against the likelihood the net was built with:
        # set_params(likelihood=...) after fit changes the next fit only.
        likelihood = self.likelihood
        if fitted:
            built = getattr(self, "_built_parameters", None) or {}
            likelihood = built.get("likelihood", likelihood)
        if likelihood == "bernoulli":
            _check_unit_interval(X, "likelihood='bernoulli'", "likelihood='gaussian'")

    def _initialize_module(self, module, X, seed):
        noise = module.noise_logvar
        if not isinstance(noise, torch.nn.Parameter):
            return None, None
        # The learned noise variance starts at PCA's residual variance per
        # feature (probabilistic PCA's noise at this width), not at 1: the
        # log-variances move by about learning_rate per step, so a start far
        # from the data's scale costs thousands of steps.
        mean, scale, components = pca_start(X, self.n_components, seed)
        variance = residual_variance(X, mean, components)
        # A floor for features the components explain (or constant ones).
        floor = max(_NOISE_FLOOR * scale**2, math.exp(LOGVAR_RANGE[0]))
        with torch.no_grad():
            noise.copy_(torch.as_tensor(
                np.log(np.maximum(variance, floor)), dtype=noise.dtype))
        return None, None

    def _make_criterion(self):
        # The VAE module computes its own loss (the negative ELBO).
        return None

    def _training_warmup(self):
        return ("kl_weight", float(self.beta), self.kl_warmup)

    def _encoder_width(self):
        # The encoder outputs the posterior's mean and log-variance.
        return 2 * self.n_components

    def _build_module(self, encoder, decoder, n_features):
        return VAE(
            encoder,
            decoder,
            n_components=self.n_components,
            n_features=n_features,
            likelihood=self.likelihood,
            noise_variance=self.noise_variance,
            kl_weight=float(self.beta),
        )

    def _record_terms(self, terms):
        self.reconstruction_curve_ = [-value for value in terms.get("nll", [])]
        self.kl_curve_ = list(terms.get("kl", []))

    # -------------------------------------------------------------- scoring
    def _per_row_bounds(self, X, n_draws, bound):
        """Apply a bound of the VAE module to validated X, batch by batch.

        ``bound(batch, eps)`` gets the batch as a tensor and its row-keyed
        standard normal draws of shape (batch, n_draws, n_components), and
        returns a tensor of shape (batch, n_outputs).
        """
        module, device = self._inference_module()
        if sp.issparse(X):
            X = X.tocsr()
        outputs = []
        with torch.inference_mode():
            for rows in iter_row_batches(X.shape[0], self.batch_size):
                block = X[rows].toarray() if sp.issparse(X) else X[rows]
                eps = _row_keyed_normal(block, n_draws, self._n_features_out)
                # Whole 16-row tiles, so that a row's bound does not depend
                # on the other rows (float32 rounding; see batched_apply).
                n_rows = fixed_batch_rows(len(block))
                batch = padded_rows(as_tensor(block, device=device), n_rows)
                eps = padded_rows(as_tensor(eps, device), n_rows)
                outputs.append(to_numpy(bound(module, batch, eps)[:len(block)],
                                        dtype=np.float64))
        return np.concatenate(outputs, axis=0)

    def _log_importance_weights(self, X, n_draws):
        """log p(x, z_k) - log q(z_k | x) of validated X: (n_samples, n_draws)."""
        return self._per_row_bounds(
            X, n_draws,
            lambda module, batch, eps: module.log_importance_weights(batch, eps))

    def score_samples(self, X):
        """Lower bound on log p(x) of each sample, in nats (higher is better).

        With ``n_importance_samples=1``, the ELBO
        ``log p(x | z) - KL(q(z | x) || p(z))`` at one posterior draw ``z``
        (the KL is exact); with ``K > 1`` draws ``z_k``, the
        importance-weighted bound ``log(mean_k p(x, z_k) / q(z_k | x))``,
        which is never below the ELBO estimated from the same draws
        (``mean_k log(p(x, z_k) / q(z_k | x))``) and approaches log p(x) as K
        grows. Each row's draws are fixed by its values, so scores are
        repeatable and do not depend on the other rows.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            float64.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        self._check_likelihood_support(X, fitted=True)
        # The log-likelihood squares X: beyond ~1e16 it overflows float32.
        _check_squares_fit_float32(X, type(self).__name__)
        n_draws = self.n_importance_samples
        if n_draws == 1:
            return self._per_row_bounds(
                X, 1, lambda module, batch, eps: module.elbo(batch, eps[:, 0])[:, None]
            )[:, 0]
        log_weights = self._log_importance_weights(X, int(n_draws))
        peak = log_weights.max(axis=1, keepdims=True)
        mean_weight = np.mean(np.exp(log_weights - peak), axis=1)
        return peak[:, 0] + np.log(mean_weight)

    def score(self, X, y=None):
        """Mean of ``score_samples(X)``: the ELBO per sample, in nats.

        Higher is better, so ``GridSearchCV`` and ``cross_val_score`` choose
        hyper-parameters (``n_components``, ...) by held-out likelihood without
        labels. With ``n_importance_samples > 1``, the mean importance-weighted
        bound.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data to score.
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    # ----------------------------------------------------------- generation
    def sample(self, n_samples=1, random_state=None):
        """Generate data: decode codes drawn from the prior N(0, I).

        Returns the decoder's mean for each code (probabilities for the
        Bernoulli likelihood), which is how VAE samples are usually shown.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws: the same int gives the same samples. None draws
            fresh ones. torch's global RNG is left untouched.

        Returns
        -------
        X_new : ndarray of shape (n_samples, ``n_features_in_``)
            In the float dtype of the training data.
        """
        check_is_fitted(self)
        self._check_params_after_fit()
        if not (isinstance(n_samples, Integral) and not isinstance(n_samples, bool)
                and n_samples >= 1):
            raise ValueError(
                f"n_samples must be a positive integer; got {n_samples!r}."
            )
        module, device = self._inference_module()
        out = np.empty((n_samples, self.n_features_in_), dtype=self._fit_dtype)
        with seeded(random_state, device), torch.inference_mode():
            for start in range(0, n_samples, self.batch_size):
                stop = min(start + self.batch_size, n_samples)
                z = torch.randn(stop - start, self._n_features_out, device=device)
                out[start:stop] = to_numpy(module.decode(z))
        return out
