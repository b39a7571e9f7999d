"""
=========================================================
The variational autoencoder: ELBO, latent space, samples
=========================================================

A variational autoencoder (VAE) learns a *distribution* over its code. The
encoder maps each digit ``x`` to a Gaussian posterior ``q(z | x)`` over a
latent variable ``z`` (a mean ``mu`` and a variance); the decoder maps a code
``z`` to a distribution ``p(x | z)`` over images. Training draws
``z = mu + sigma * eps`` with ``eps ~ N(0, I)`` (the *reparameterisation
trick*, which lets gradients flow through the draw) and maximises the
evidence lower bound

.. math::

    \\mathrm{ELBO}(x) = \\mathbb{E}_{q(z \\mid x)}[\\log p(x \\mid z)]
    - \\mathrm{KL}(q(z \\mid x) \\,\\|\\, \\mathcal{N}(0, I)) \\le \\log p(x).

The first term asks the decoder to reconstruct ``x``; the second keeps the
posteriors close to the prior ``N(0, I)``, so that codes drawn from the prior
decode into plausible images. :class:`~sklearn_replearn.VAETransformer`'s
``transform`` returns ``mu``, ``score`` is the mean ELBO per sample in nats,
and ``sample`` decodes codes drawn from the prior.

Here a VAE with a two-dimensional latent space is fitted to the 8x8 digits,
so that its latent space can be drawn directly.
"""

# %%
# Data: the digits, scaled to [0, 1]
# ----------------------------------
# Pixel intensities in [0, 1] suit a Bernoulli likelihood (the decoder outputs
# one probability per pixel). A quarter of the digits is held out to score
# the model on data it did not see.
# sphinx_gallery_thumbnail_number = 5
import time
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from sklearn_replearn import VAETransformer
from sklearn_replearn.plotting import (
    LatentSpaceDisplay,
    LossCurveDisplay,
    ReconstructionDisplay,
    SamplesDisplay,
)

digits = load_digits()
X = digits.data / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, digits.target, test_size=0.25, stratify=digits.target, random_state=0
)
print(
    f"{len(X_train)} training and {len(X_test)} held-out digits of "
    f"{X.shape[1]} pixels"
)

# %%
# Fit the VAE
# -----------
# ``max_iter`` is kept small so that this page builds in seconds; early
# stopping holds out 10% of the training digits and keeps the weights with the
# best held-out ELBO. The model is still improving after 60 epochs (the
# default budget, ``max_iter="auto"``, trains to convergence): it warns so,
# and the warning is silenced here.
vae = VAETransformer(
    n_components=2,
    hidden_layer_sizes=(128,),
    likelihood="bernoulli",
    max_iter=60,
    learning_rate=3e-3,
    random_state=0,
    device="cpu",
)
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    vae.fit(X_train)
print(
    f"fitted in {time.perf_counter() - start:.1f} s, {vae.n_iter_} epochs"
)

# %%
# The ELBO, on training and held-out digits
# ------------------------------------------
# ``score`` is the mean ELBO per digit, in nats: a lower bound on the
# log-likelihood of the data, higher is better. ``reconstruction_curve_`` and
# ``kl_curve_`` hold its two terms for each training epoch. A held-out ELBO
# close to the training one means the model did not overfit.
print(f"{'':>26} {'ELBO (nats)':>12}")
print(f"{'training digits':>26} {vae.score(X_train):12.2f}")
print(f"{'held-out digits':>26} {vae.score(X_test):12.2f}")
print(
    f"{'last epoch: E[log p(x|z)]':>26} {vae.reconstruction_curve_[-1]:12.2f}"
)
print(f"{'last epoch: KL(q || p)':>26} {vae.kl_curve_[-1]:12.2f}")

# %%
# The loss curve is the negative ELBO of each epoch, with the validation loss
# of early stopping beside it.
LossCurveDisplay.from_estimator(vae, title="negative ELBO per epoch (nats)")
plt.show()

# %%
# The latent space
# ----------------
# ``transform`` gives the posterior mean ``mu(x)`` of each held-out digit.
# The VAE never saw the labels, yet several digits form their own clusters
# (others overlap: two numbers per digit keep only coarse differences). The
# code captures what the digits look like.
LatentSpaceDisplay.from_estimator(
    vae, X_test, y_test, title="VAE latent space (held-out digits)"
)
plt.show()

# %%
# Reconstructions
# ---------------
# ``inverse_transform`` decodes ``mu(x)``: the pixel probabilities of the
# decoder. With only two latent variables the reconstructions keep the
# digit's overall shape and lose its details.
ReconstructionDisplay.from_estimator(
    vae,
    X_test,
    image_shape=(8, 8),
    title="held-out digits and their decoding",
)
plt.show()

# %%
# Generated samples
# -----------------
# ``sample`` draws codes from the prior ``N(0, I)`` and decodes them. The KL
# term of the ELBO is what makes these draws land where the decoder has
# learned something.
SamplesDisplay.from_estimator(
    vae,
    n_samples=24,
    image_shape=(8, 8),
    random_state=0,
    title="decoded draws from the prior",
)
plt.show()

# %%
# A latent traversal
# ------------------
# Decoding a regular grid of codes, from -2.5 to 2.5 prior standard
# deviations on each axis, shows how the images change as one moves through
# the latent space: the digits morph smoothly into one another, because
# nearby codes decode into similar images.
SamplesDisplay.from_latent_traversal(
    vae,
    n_steps=10,
    limit=2.5,
    image_shape=(8, 8),
    title="decoded grid of the 2-D latent space",
)
plt.show()

# %%
# A wider latent space
# --------------------
# Two latent variables are enough to draw, not to describe the digits well.
# The held-out ELBO tells how much a wider code helps, without labels. (With
# 60 epochs the wider model is still improving when it stops: it warns so,
# and a longer fit scores higher still.)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    wide = VAETransformer(
        n_components=8,
        likelihood="bernoulli",
        max_iter=60,
        learning_rate=3e-3,
        random_state=0,
        device="cpu",
    ).fit(X_train)
for model in (vae, wide):
    print(
        f"n_components={model.n_components}: held-out ELBO "
        f"{model.score(X_test):.2f} nats per digit ({model.n_iter_} epochs)"
    )
