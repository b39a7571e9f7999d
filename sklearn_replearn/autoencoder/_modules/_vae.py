"""The variational autoencoder module and its bounds (ELBO, importance-weighted)."""

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["LOGVAR_RANGE", "VAE", "gaussian_kl"]

# Log-variances (of the posterior, and of a learned Gaussian likelihood) are
# clamped to this range: exp(-20) ~ 2e-9 and exp(10) ~ 2e4 keep the standard
# deviation, its inverse square and the KL term finite in float32, and no
# sensible model of data on a moderate scale needs more.
LOGVAR_RANGE = (-20.0, 10.0)
_LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) of each row, summed over dimensions.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.autoencoder._modules import gaussian_kl
    >>> gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def _gaussian_log_density(z, mu, logvar):
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


class VAE(nn.Module):
    """Variational autoencoder: Gaussian posterior, standard normal prior.

    The encoder maps x to ``2 * n_components`` numbers: the posterior means
    ``mu`` then the log-variances (clamped to :data:`LOGVAR_RANGE`). A code is
    drawn with the reparameterisation trick ``z = mu + exp(logvar / 2) * eps``
    and the decoder maps it to the likelihood's parameter: Bernoulli logits, or
    the mean of a Gaussian whose per-feature variance is a learned parameter
    (``noise_variance="learned"``) or a fixed number.

    ``forward`` returns ``(decoder_output, mu, logvar)``, which ``loss`` turns
    into the negative ELBO (with the KL term weighted by ``kl_weight``)
    averaged over the batch, in nats per sample. While training, ``loss``
    keeps each row's reconstruction negative log-likelihood and KL in
    ``loss_terms`` (detached), for logging.

    Parameters
    ----------
    encoder : torch.nn.Module
        ``(batch, n_features) -> (batch, 2 * n_components)``.
    decoder : torch.nn.Module
        ``(batch, n_components) -> (batch, n_features)``.
    n_components : int
        Width of the latent code.
    n_features : int
        Width of the data.
    likelihood : {"gaussian", "bernoulli"}, default="gaussian"
        The decoder's distribution p(x | z).
    noise_variance : "learned" or float, default="learned"
        Variance of the Gaussian likelihood: one learned value per feature, or
        a fixed value for all. Ignored for the Bernoulli likelihood.
    kl_weight : float, default=1.0
        Weight of the KL term in ``loss`` (beta; annealed during warm-up).

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.autoencoder._modules import VAE, make_mlp
    >>> vae = VAE(make_mlp((6, 16, 4), "relu"), make_mlp((2, 16, 6), "relu"),
    ...           n_components=2, n_features=6, likelihood="bernoulli")
    >>> x = torch.rand(5, 6)
    >>> vae.encode(x).shape
    torch.Size([5, 2])
    >>> vae.elbo(x).shape, vae.log_importance_weights(x, torch.randn(3, 2)).shape
    (torch.Size([5]), torch.Size([5, 3]))
    """

    def __init__(self, encoder, decoder, n_components, n_features,
                 likelihood="gaussian", noise_variance="learned", kl_weight=1.0):
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(
                f"likelihood must be 'gaussian' or 'bernoulli'; got {likelihood!r}."
            )
        self.encoder = encoder
        self.decoder = decoder
        self.n_components = n_components
        self.likelihood = likelihood
        self.kl_weight = kl_weight
        self.loss_terms = {}
        if likelihood == "bernoulli":
            self.register_buffer("noise_logvar", None)
        elif noise_variance == "learned":
            self.noise_logvar = nn.Parameter(torch.zeros(n_features))
        else:
            self.register_buffer("noise_logvar", torch.full(
                (n_features,), math.log(noise_variance)))

    # ------------------------------------------------------------ posterior
    def posterior(self, x):
        """Mean and (clamped) log-variance of q(z | x), each (batch, n_components)."""
        out = self.encoder(x)
        if out.ndim != 2 or out.shape[1] != 2 * self.n_components:
            raise ValueError(
                "The VAE encoder must output 2 * n_components = "
                f"{2 * self.n_components} columns (the posterior means, then the "
                f"log-variances); it gave shape {tuple(out.shape)}. Make the "
                "encoder's last layer that wide."
            )
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x):
        """The posterior mean mu(x): the deterministic code."""
        return self.posterior(x)[0]

    def decode(self, z):
        """The decoder's mean: probabilities (Bernoulli) or the Gaussian mean."""
        raw = self.decoder(z)
        return torch.sigmoid(raw) if self.likelihood == "bernoulli" else raw

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def forward(self, x):
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), mu, logvar

    # --------------------------------------------------------------- bounds
    def negative_log_likelihood(self, raw, x):
        """-log p(x | z) of each row, from the decoder's raw output ``raw``."""
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(raw, x, reduction="none").sum(-1)
        logvar = self.noise_logvar.clamp(*LOGVAR_RANGE)
        return 0.5 * ((x - raw).pow(2) * torch.exp(-logvar) + logvar
                      + _LOG_2PI).sum(-1)

    def log_likelihood(self, raw, x):
        """log p(x | z) of each row, from the decoder's raw output ``raw``."""
        return -self.negative_log_likelihood(raw, x)

    def loss(self, output, x):
        """Negative ELBO (KL weighted by ``kl_weight``), mean over the batch."""
        raw, mu, logvar = output
        nll = self.negative_log_likelihood(raw, x)
        kl = gaussian_kl(mu, logvar)
        if self.training:
            self.loss_terms = {"nll": nll.detach(), "kl": kl.detach()}
        if self.kl_weight != 1.0:
            kl = self.kl_weight * kl
        return (nll + kl).mean()

    def elbo(self, x, eps=None):
        """One-draw ELBO of each row: log p(x | z) - KL(q(z | x) || p(z)).

        ``eps`` (shape ``(n_components,)`` or ``(batch, n_components)``) is the
        standard normal draw for z; by default a fresh one per row.
        """
        mu, logvar = self.posterior(x)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.log_likelihood(self.decoder(z), x) - gaussian_kl(mu, logvar)

    def log_importance_weights(self, x, eps):
        """log p(x, z_k) - log q(z_k | x) for draws ``z_k = mu + sigma * eps[k]``.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, n_features)
        eps : torch.Tensor of shape (batch, K, n_components) or (K, n_components)
            Standard normal draws, per row or shared by all rows.

        Returns
        -------
        torch.Tensor of shape (batch, K)
            ``logsumexp(., dim=1) - log K`` is the importance-weighted bound;
            the mean over ``dim=1`` is a K-draw estimate of the ELBO.
        """
        mu, logvar = self.posterior(x)
        n_draws = eps.shape[-2]
        z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps  # (b, K, d)
        raw = self.decoder(z.reshape(-1, mu.shape[1])).reshape(
            x.shape[0], n_draws, -1)
        log_px = self.log_likelihood(raw, x.unsqueeze(1).expand_as(raw))
        log_pz = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
        log_qz = _gaussian_log_density(z, mu.unsqueeze(1), logvar.unsqueeze(1))
        return log_px + log_pz - log_qz
