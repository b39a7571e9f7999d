"""
=============================================
Choosing n_components without labels: score
=============================================

How wide should a representation be? Without labels there is no accuracy
to cross-validate, but every transformer of this package has a ``score``
method, higher is better, that measures how well the model explains
held-out data:

* :class:`~sklearn_replearn.AutoencoderTransformer`: minus the mean
  reconstruction error;
* :class:`~sklearn_replearn.VAETransformer`: the mean ELBO per sample, a
  lower bound on the log-likelihood, in nats;
* :class:`~sklearn_replearn.DictionaryLearner`: minus the mean lasso
  objective (reconstruction error plus ``alpha`` times the codes' L1 norm);
* and scikit-learn's :class:`~sklearn.decomposition.PCA`, for reference: the
  log-likelihood of probabilistic PCA.

So :class:`~sklearn.model_selection.GridSearchCV` (or
``cross_val_score``) chooses ``n_components`` with
no ``y`` at all. The two kinds of score behave differently, and this example
shows how.
"""

# %%
# Cross-validated scores over n_components
# ----------------------------------------
# Three folds of the 8x8 digits (scaled to [0, 1]), five widths, four models.
# The neural models train for few epochs so that this page builds in seconds.
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_replearn import (
    AutoencoderTransformer,
    DictionaryLearner,
    VAETransformer,
)

X = load_digits().data / 16.0
cv = KFold(n_splits=3, shuffle=True, random_state=0)
widths = [2, 4, 8, 16, 32]
models = {
    "PCA (log-likelihood)": PCA(random_state=0),
    "autoencoder (-MSE)": AutoencoderTransformer(
        max_iter=15, random_state=0, device="cpu"
    ),
    "VAE (ELBO)": VAETransformer(
        likelihood="bernoulli",
        max_iter=15,
        learning_rate=3e-3,
        random_state=0,
        device="cpu",
    ),
    "dictionary (-objective)": DictionaryLearner(
        alpha=0.1, max_iter=5, random_state=0, device="cpu"
    ),
}
# ``GridSearchCV`` with no ``scoring`` uses the estimator's ``score``, and
# ``fit(X)`` needs no labels. ``refit=False``: only the scores are needed.
scores, searches = {}, {}
for name, model in models.items():
    start = time.perf_counter()
    search = GridSearchCV(
        model, {"n_components": widths}, cv=cv, refit=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short budgets
        search.fit(X)
    searches[name] = search
    scores[name] = search.cv_results_["mean_test_score"]
    print(
        f"{name:<24} {len(widths) * cv.n_splits} fits in "
        f"{time.perf_counter() - start:5.1f} s"
    )

print(f"\n{'mean held-out score':<24}" + "".join(f"{n:>8}" for n in widths))
for name, values in scores.items():
    print(f"{name:<24}" + "".join(f"{value:>8.3f}" for value in values))

# %%
# Two kinds of score
# ------------------
# The scores are on different scales, so each curve is drawn on its own axes.
fig, axes = plt.subplots(1, 4, figsize=(13, 3))
for axis, (name, values) in zip(axes, scores.items()):
    axis.plot(widths, values, "o-")
    best = int(np.argmax(values))
    axis.plot(widths[best], values[best], "r*", markersize=12)
    axis.set_xscale("log", base=2)
    axis.set_xticks(widths, [str(n) for n in widths])
    axis.set_xlabel("n_components")
    axis.set_title(name, fontsize=9)
axes[0].set_ylabel("mean held-out score")
fig.tight_layout()
plt.show()

# %%
# * **Reconstruction scores** (the autoencoder's, the dictionary's) can only
#   improve as the code widens: more components reconstruct at least as well,
#   on held-out data too. Their best is the widest; what they tell is where
#   the gain flattens (the "elbow"), which is a judgement, or the smallest
#   width within a tolerance of the best, which is a rule.
# * **Likelihood scores** (probabilistic PCA's, the VAE's ELBO) pay for
#   width: a wider model spreads its probability over more ways the data
#   could vary, and its extra components also fit noise. Their held-out
#   value can peak at a finite width, which is then the choice, with no
#   judgement needed. In this build the VAE's ELBO peaks at a middle width
#   (the star), while probabilistic PCA's still rises at 32 of the 64 pixels:
#   for a linear-Gaussian model the digits' variance is spread over many
#   directions, and its peak lies beyond this grid.

# %%
# The choice
# ----------
# For a likelihood score, the search's best width is the choice:
for name in ("PCA (log-likelihood)", "VAE (ELBO)"):
    search = searches[name]
    print(
        f"{name}: best n_components {search.best_params_['n_components']} "
        f"(mean held-out score {search.best_score_:.2f})"
    )
