"""Gradients of lasso codes with respect to the dictionary (implicit function).

Task-driven dictionary learning (Mairal, Bach & Ponce, 2012) needs the
derivative of the lasso solution ``z*(x, D)`` with respect to ``D``. On the
active set ``S`` (the non-zero codes, locally constant) the optimality
conditions give ``z*_S = (D_S D_S^T)^{-1} (D_S x - alpha * sign(z*_S))`` and
``z*`` is zero elsewhere, a differentiable function of ``D``.

The backward pass is written out (Mairal et al. 2012, proposition 1) rather
than left to autograd through a linear solve: with the upstream gradient ``g``
and ``beta_S = (D_S D_S^T + ridge I)^{-1} g_S`` (zero off the active set), the
gradient is ``beta.T @ (X - Z @ D) - Z.T @ (beta @ D)``. One batched Cholesky
solve per minibatch, and no solve at all in the forward pass.
"""

import torch

from ._linalg import solve_on_supports

__all__ = ["differentiable_lasso_codes"]


def differentiable_lasso_codes(X, D, codes, *, ridge=1e-4):
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
    >>> codes = differentiable_lasso_codes(X, D, Z)
    >>> codes.sum().backward()
    >>> D.grad.shape
    torch.Size([3, 3])
    """
    return _ActiveSetLasso.apply(X.detach(), D, codes.detach(), float(ridge))


class _ActiveSetLasso(torch.autograd.Function):
    """Identity on the codes forward; the implicit active-set gradient backward."""

    @staticmethod
    def forward(ctx, X, D, codes, ridge):
        ctx.save_for_backward(X, D, codes)
        ctx.ridge = ridge
        return codes.clone()

    @staticmethod
    def backward(ctx, grad_codes):
        X, D, codes = ctx.saved_tensors
        if not ctx.needs_input_grad[1]:
            return None, None, None, None
        # Singular active blocks (collinear atoms, ridge=0): least squares.
        beta = solve_on_supports(D @ D.T, codes != 0, grad_codes, ctx.ridge,
                                 on_failure="lstsq")
        residual = X - codes @ D
        grad_D = beta.T @ residual - codes.T @ (beta @ D)
        return None, grad_D, None, None
