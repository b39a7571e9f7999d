"""Batched solves restricted to each sample's support (active set).

Both the active-set lasso coder and the implicit gradient of lasso codes solve,
for every row ``i`` of a batch, a small positive definite system on the atoms
``S_i`` that the row uses: ``(G_SS + ridge I) z_S = r_S``, zero elsewhere. The
supports differ from row to row, so each row's atoms are gathered first and
the systems padded to the largest support, padding slots getting an identity
row and a zero right-hand side; one batched Cholesky factorisation then solves
them all.
"""

import torch

__all__ = ["solve_on_supports"]


def solve_on_supports(gram, active, rhs, ridge, *, relative_ridge=False,
                      width=None, on_failure="nan"):
    """Solve ``(G_SS + ridge I) z_S = rhs_S`` on each row's support ``S``.

    Parameters
    ----------
    gram : torch.Tensor of shape (k, k)
        ``D @ D.T``.
    active : torch.Tensor of shape (m, k), dtype bool
        Each row's support.
    rhs : torch.Tensor of shape (m, k)
        Right-hand sides; entries off the support are ignored.
    ridge : float
        Added to the diagonal of each row's system.
    relative_ridge : bool, default=False
        Scale ``ridge`` by the largest diagonal entry of each row's system.
    width : int, default=None
        Padded support size (at least the largest support). None: the largest
        support of the batch.
    on_failure : {"nan", "lstsq"}, default="nan"
        What a row whose system is not positive definite gets: NaN, or (for the
        whole batch) a least-squares solve.

    Returns
    -------
    torch.Tensor of shape (m, k)
        The solutions, zero off each row's support.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse._linalg import solve_on_supports
    >>> active = torch.tensor([[True, False], [True, True]])
    >>> solve_on_supports(2 * torch.eye(2), active, torch.ones(2, 2), ridge=0.0)
    tensor([[0.5000, 0.0000],
            [0.5000, 0.5000]])
    """
    if width is None:
        width = int(active.sum(dim=1).max()) if active.shape[0] else 0
    if width == 0:
        return torch.zeros_like(rhs)
    # The support first (stable, so in atom order), then the padding atoms.
    slots = torch.argsort((~active).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = active.gather(1, slots).to(rhs.dtype)                     # (m, w)
    system = gram[slots[:, :, None], slots[:, None, :]]                # (m, w, w)
    system = system * (valid[:, :, None] * valid[:, None, :])
    if relative_ridge:
        ridge = ridge * torch.diagonal(system, dim1=1, dim2=2).amax(dim=1,
                                                                    keepdim=True)
    system.diagonal(dim1=1, dim2=2).add_(ridge * valid + (1.0 - valid))
    right = (valid * rhs.gather(1, slots)).unsqueeze(-1)
    factor, info = torch.linalg.cholesky_ex(system)
    ok = info == 0
    if on_failure == "lstsq" and not bool(ok.all()):
        solution = torch.linalg.lstsq(system, right).solution.squeeze(-1)
    else:
        solution = torch.cholesky_solve(right, factor).squeeze(-1)
        if on_failure == "nan":
            solution = torch.where(ok.unsqueeze(1), solution, torch.nan)
    return torch.zeros_like(rhs).scatter_(1, slots, valid * solution)
