"""Gradients of lasso codes with respect to the dictionary (implicit function).

Task-driven dictionary learning (Mairal, Bach & Ponce, 2012) needs the
derivative of the lasso solution ``z*(x, D)`` with respect to ``D``. On the
active set ``S`` (the non-zero codes, locally constant) the optimality
conditions give ``z*_S = (D_S D_S^T)^{-1} (D_S x - alpha * sign(z*_S))`` and
``z*`` is zero elsewhere, a differentiable function of ``D``.
"""

import torch

__all__ = ["differentiable_lasso_codes"]


def differentiable_lasso_codes(X, D, codes, alpha, *, ridge=1e-4):
    """Lasso codes whose value is ``codes`` and whose gradient flows to ``D``.

    The forward value is exactly ``codes`` (a lasso solution found by any
    solver, e.g. :func:`lasso_fista`); the backward pass differentiates the
    active-set equations ``(D_S D_S^T + ridge I) z_S = D_S x - alpha s_S``,
    solved for the whole batch at once as masked ``(k, k)`` systems. The small
    ``ridge`` keeps nearly collinear active atoms from blowing up the gradient
    (the elastic-net regularisation of Mairal et al., 2012).

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
        Samples (no gradient needed).
    D : torch.Tensor of shape (k, p)
        Dictionary; gradients flow to it (and through it to earlier graphs).
    codes : torch.Tensor of shape (n, k)
        Lasso solutions for ``X`` and ``D`` (detached).
    alpha : float
        The lasso penalty used to compute ``codes``.
    ridge : float, default=1e-4
        Tikhonov term added to the active Gram matrix in the backward pass.

    Returns
    -------
    torch.Tensor of shape (n, k)
        Equal to ``codes``; differentiable with respect to ``D``.

    References
    ----------
    Mairal, J., Bach, F., & Ponce, J. (2012). Task-driven dictionary learning.
    IEEE Transactions on Pattern Analysis and Machine Intelligence, 34(4).

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import differentiable_lasso_codes, lasso_fista
    >>> D = torch.eye(3, requires_grad=True)
    >>> X = torch.tensor([[2.0, 0.1, -3.0]])
    >>> Z, _ = lasso_fista(X, D.detach(), alpha=0.5)
    >>> codes = differentiable_lasso_codes(X, D, Z, alpha=0.5)
    >>> codes.sum().backward()
    >>> D.grad.shape
    torch.Size([3, 3])
    """
    codes = codes.detach()
    active = codes != 0
    mask = active.to(D.dtype)
    n_components = D.shape[0]
    gram = D @ D.T
    correlations = X @ D.T
    eye = torch.eye(n_components, dtype=D.dtype, device=D.device)
    # Masked systems: the active block of the Gram matrix (plus ridge) and the
    # identity on inactive coordinates, whose right-hand side is zero.
    system = mask[:, :, None] * (gram + ridge * eye) * mask[:, None, :]
    system = system + torch.diag_embed(1.0 - mask)
    rhs = mask * (correlations - alpha * torch.sign(codes))
    solution = torch.linalg.solve(system, rhs.unsqueeze(-1)).squeeze(-1)
    # Value of the solver's codes, gradient of the active-set solution.
    return codes + (solution - solution.detach())
