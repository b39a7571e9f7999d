"""The PCA a PCA-anchored autoencoder starts from (``init="pca"``)."""

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

__all__ = ["pca_start"]


def _mean_and_scale(X):
    """Per-feature mean, and the root mean variance of the features.

    One scale for all features keeps the squared error's weighting of the
    features as it is in X (per-feature standardisation would not).
    """
    if sp.issparse(X):
        mean = np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
        squares = np.asarray(X.multiply(X).mean(axis=0, dtype=np.float64)).ravel()
    else:
        mean = X.mean(axis=0, dtype=np.float64)
        squares = np.einsum("ij,ij->j", X, X, dtype=np.float64) / X.shape[0]
    variance = float(np.mean(np.maximum(squares - mean**2, 0.0)))
    scale = np.sqrt(variance)
    # Constant data: any scale reconstructs it (the mean does).
    return mean, (scale if np.isfinite(scale) and scale > 0 else 1.0)


def pca_start(X, n_components, seed):
    """Mean, scale and principal axes of training data X.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Validated training data.
    n_components : int
        Code width; at most ``min(n_samples, n_features)`` axes exist, and
        fewer rows are returned when X has fewer.
    seed : int
        Seeds a randomised solver.

    Returns
    -------
    mean : ndarray of shape (n_features,)
    scale : float
    components : ndarray of shape (n_found, n_features)
        Orthonormal axes, the largest variance first.
    """
    mean, scale = _mean_and_scale(X)
    n_samples, n_features = X.shape
    n_found = min(n_components, n_samples, n_features)
    if n_samples < 2:
        return mean, scale, np.zeros((0, n_features))
    if sp.issparse(X):
        if n_found >= min(n_samples, n_features):
            X = X.toarray()
            solver = "full"
        else:
            solver = "arpack"  # PCA centres sparse X implicitly
    elif n_samples * n_features * min(n_samples, n_features) <= 1e11:
        solver = "full"  # exact (a randomised solver misses PCA by ~0.1%)
    else:
        solver = "randomized"
    pca = PCA(n_components=n_found, svd_solver=solver,
              random_state=seed % (2**32)).fit(X)
    return mean, scale, pca.components_


def residual_variance(X, mean, components, batch_size=4096):
    """Per-feature variance of X left unexplained by ``components``.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    mean : ndarray of shape (n_features,)
    components : ndarray of shape (n_found, n_features)
        Orthonormal axes.
    batch_size : int, default=4096
        Rows densified at a time.

    Returns
    -------
    variance : ndarray of shape (n_features,)
    """
    total = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], batch_size):
        rows = X[start:start + batch_size]
        rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
        centred = rows.astype(np.float64) - mean
        residual = centred - (centred @ components.T) @ components
        total += np.einsum("ij,ij->j", residual, residual)
    return total / max(X.shape[0], 1)
