"""Batched sparse coders on tensors: FISTA lasso, batch OMP, soft thresholding.

Every coder takes a batch of samples ``X`` of shape ``(n, p)`` and a dictionary
``D`` of shape ``(k, p)`` (one atom per row, as ``components_``) and returns
codes ``Z`` of shape ``(n, k)`` with ``X ~ Z @ D``. The whole batch is solved
at once with matrix products on the Gram matrix ``G = D @ D.T`` and the
correlations ``C = X @ D.T``, so the cost per iteration is one ``(n, k) @ (k, k)``
product whatever the number of samples.

The lasso problem is scaled as in scikit-learn's ``sparse_encode``::

    0.5 * ||x - z @ D||^2 + alpha * ||z||_1      for each sample x
"""

import torch

__all__ = [
    "lasso_duality_gap",
    "lasso_fista",
    "lasso_objective",
    "lipschitz_constant",
    "omp",
    "soft_threshold",
    "threshold_codes",
]


def soft_threshold(Z, threshold, *, positive=False):
    """The proximal operator of ``threshold * ||.||_1`` (elementwise shrinkage).

    Parameters
    ----------
    Z : torch.Tensor
        Values to shrink.
    threshold : float or torch.Tensor
        Non-negative shrinkage amount (broadcast against ``Z``).
    positive : bool, default=False
        Also project onto the non-negative orthant (the prox of the L1 norm plus
        the indicator of ``z >= 0``).

    Returns
    -------
    torch.Tensor
        ``sign(Z) * max(|Z| - threshold, 0)``, or ``max(Z - threshold, 0)``
        when ``positive``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import soft_threshold
    >>> soft_threshold(torch.tensor([-2.0, 0.5, 3.0]), 1.0)
    tensor([-1.,  0.,  2.])
    """
    if positive:
        return torch.clamp(Z - threshold, min=0)
    if isinstance(threshold, torch.Tensor):
        return torch.sign(Z) * torch.clamp(Z.abs() - threshold, min=0)
    return torch.nn.functional.softshrink(Z, float(threshold))


def lipschitz_constant(gram):
    """Largest eigenvalue of the Gram matrix: the Lipschitz constant of the
    gradient of ``0.5 * ||x - z @ D||^2`` in ``z`` (at least a tiny positive value).
    """
    gram = gram.detach().to(torch.float64)
    if not bool(torch.isfinite(gram).all()):
        # eigvalsh would fail with a bare LinAlgError: say what went wrong.
        raise ValueError(
            "The dictionary's Gram matrix has inf or NaN entries: the atoms "
            "overflowed float32 (the data's squares are too large for float32 "
            "arithmetic). Scale the data down, e.g. with StandardScaler."
        )
    # eigvalsh on the (small, symmetric) Gram matrix, in float64 for accuracy.
    value = torch.linalg.eigvalsh(gram)[-1].item()
    return max(value, 1e-12)


def lasso_objective(X, D, Z, alpha):
    """Per-sample lasso objective ``0.5 * ||x - z @ D||^2 + alpha * ||z||_1``.

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
    D : torch.Tensor of shape (k, p)
    Z : torch.Tensor of shape (n, k)
    alpha : float

    Returns
    -------
    torch.Tensor of shape (n,)
    """
    residual = X - Z @ D
    return 0.5 * residual.pow(2).sum(dim=1) + alpha * Z.abs().sum(dim=1)


def lasso_start(X, D, init, positive, gram=None, correlations=None):
    """What every lasso coder starts from: ``X`` in the working dtype, the Gram
    matrix ``D @ D.T``, the correlations ``X @ D.T`` (computed unless given)
    and a fresh copy of the starting codes (zeros without ``init``; clipped
    at zero for non-negative codes).

    Returns
    -------
    X, gram, correlations, Z : torch.Tensor
    """
    if gram is None:
        gram = D @ D.T
    if correlations is None:
        correlations = X @ D.T
    if init is None:
        Z = correlations.new_zeros(correlations.shape)
    else:
        Z = init.to(dtype=correlations.dtype, copy=True)
        if positive:
            Z.clamp_(min=0)
    return X.to(dtype=correlations.dtype), gram, correlations, Z


def lasso_fista(
    X,
    D,
    alpha,
    *,
    init=None,
    max_iter=1000,
    tol=1e-4,
    positive=False,
    gram=None,
    correlations=None,
    lipschitz=None,
    check_every=10,
):
    """Solve the lasso for every row of ``X`` at once by FISTA with restarts.

    Minimises ``0.5 * ||x - z @ D||^2 + alpha * ||z||_1`` (optionally with
    ``z >= 0``) for each sample, the same problem and scaling as scikit-learn's
    ``sparse_encode(..., algorithm="lasso_lars")``. Accelerated proximal
    gradient (Beck & Teboulle, 2009) with a per-sample adaptive momentum
    restart (O'Donoghue & Candes, 2015), so badly conditioned dictionaries
    still converge quickly. Warm starts (``init``) make repeated solves with a
    slowly changing dictionary (online dictionary learning) cheap.

    Each sample stops on its own certificate: its duality gap (the distance
    from its objective to the optimum is at most the gap) is checked every
    ``check_every`` iterations, and the samples whose relative gap is below
    ``tol`` leave the batch, so later iterations only pay for the samples
    still converging.

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
        Samples.
    D : torch.Tensor of shape (k, p)
        Dictionary, one atom per row.
    alpha : float
        Weight of the L1 penalty (``>= 0``).
    init : torch.Tensor of shape (n, k), default=None
        Starting codes (warm start); zeros when None.
    max_iter : int, default=1000
        Maximum number of FISTA iterations.
    tol : float, default=1e-4
        A sample is solved when its duality gap is at most ``tol`` times its
        objective: its objective is then within a factor ``1 + tol`` of the
        optimum. In float32, gaps below about ``1e-6`` are rounding noise.
    positive : bool, default=False
        Constrain the codes to be non-negative.
    gram, correlations : torch.Tensor, default=None
        Precomputed ``D @ D.T`` and ``X @ D.T``.
    lipschitz : float, default=None
        Precomputed largest eigenvalue of ``gram``.
    check_every : int, default=10
        Iterations between convergence checks (each check costs about two
        iterations and synchronises a GPU).

    Returns
    -------
    Z : torch.Tensor of shape (n, k)
        The codes.
    n_iter : int
        Iterations run (by the slowest sample).

    References
    ----------
    Beck, A., & Teboulle, M. (2009). A fast iterative shrinkage-thresholding
    algorithm for linear inverse problems. SIAM J. Imaging Sciences, 2(1).

    O'Donoghue, B., & Candes, E. (2015). Adaptive restart for accelerated
    gradient schemes. Foundations of Computational Mathematics, 15(3).

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import lasso_fista
    >>> g = torch.Generator().manual_seed(0)
    >>> D = torch.nn.functional.normalize(torch.randn(8, 20, generator=g), dim=1)
    >>> X = torch.randn(5, 20, generator=g)
    >>> Z, n_iter = lasso_fista(X, D, alpha=0.5)
    >>> Z.shape
    torch.Size([5, 8])
    """
    X, gram, correlations, Z = lasso_start(X, D, init, positive, gram, correlations)
    n_samples, n_components = correlations.shape
    if n_samples == 0 or n_components == 0:
        return Z, 0
    if lipschitz is None:
        lipschitz = lipschitz_constant(gram)
    step = 1.0 / lipschitz
    threshold = alpha * step
    # The gradient step Y - step * (Y G - C) as one product: Y (I - step G) + step C.
    eye = torch.eye(n_components, dtype=gram.dtype, device=gram.device)
    propagator = eye - step * gram
    scaled_correlations = step * correlations
    Y = Z
    momentum = correlations.new_ones((n_samples, 1))
    # Solved samples are written to ``codes`` and dropped from the working
    # tensors; ``rows`` maps working rows to rows of ``codes`` (None: all).
    codes, rows = Z, None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        V = torch.addmm(scaled_correlations, Y, propagator)
        if positive:
            Z_new = V.sub_(threshold).clamp_(min=0)
        else:
            Z_new = torch.nn.functional.softshrink(V, threshold)
        change = Z_new - Z
        # Gradient-based restart: drop the momentum of the samples whose step
        # goes against the last update direction.
        restart = torch.linalg.vecdot(Y - Z_new, change).unsqueeze(1) > 0
        momentum_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * momentum * momentum))
        factor = torch.where(restart, 0.0, (momentum - 1.0) / momentum_new)
        momentum = torch.where(restart, 1.0, momentum_new)
        Y = torch.addcmul(Z_new, factor, change)
        Z = Z_new
        if n_iter % check_every and n_iter != max_iter:
            continue
        gap, primal = lasso_duality_gap(X, D, Z, alpha, positive=positive)
        solved = gap <= tol * primal
        if alpha == 0:
            # Least squares has no useful dual certificate: fall back to a
            # small relative change of the codes.
            scale = Z.abs().amax().clamp(min=torch.finfo(Z.dtype).tiny)
            solved |= change.abs().amax(dim=1) <= tol * scale
        n_solved = int(solved.sum())
        if n_solved == Z.shape[0]:
            break
        if n_solved and n_iter < max_iter:
            if rows is None:
                codes = Z.clone()
                rows = torch.arange(n_samples, device=Z.device)
            else:
                codes[rows[solved]] = Z[solved]
            keep = ~solved
            rows = rows[keep]
            Z, Y, X = Z[keep], Y[keep], X[keep]
            scaled_correlations, momentum = scaled_correlations[keep], momentum[keep]
    if rows is None:
        return Z, n_iter
    codes[rows] = Z
    return codes, n_iter


def lasso_duality_gap(X, D, Z, alpha, *, positive=False):
    """Per-sample duality gap and objective of the lasso at codes ``Z``.

    The dual point is the residual ``r = x - z @ D`` scaled into the dual
    feasible set ``{theta : |D theta| <= alpha}`` (``D theta <= alpha`` for
    non-negative codes); the gap ``primal - dual`` is non-negative and bounds
    the distance of the objective to its minimum.

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
    D : torch.Tensor of shape (k, p)
    Z : torch.Tensor of shape (n, k)
    alpha : float
    positive : bool, default=False
        The codes are constrained to be non-negative.

    Returns
    -------
    gap : torch.Tensor of shape (n,)
    primal : torch.Tensor of shape (n,)
        The objective ``0.5 * ||x - z @ D||^2 + alpha * ||z||_1``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import lasso_duality_gap
    >>> X = torch.tensor([[3.0, 0.0]])
    >>> gap, primal = lasso_duality_gap(X, torch.eye(2), torch.tensor([[2.0, 0.0]]),
    ...                                 1.0)
    >>> gap, primal
    (tensor([0.]), tensor([2.5000]))
    """
    residual = X - Z @ D
    residual_sq = residual.pow(2).sum(dim=1)
    primal = 0.5 * residual_sq + alpha * Z.abs().sum(dim=1)
    correlation = residual @ D.T
    worst = correlation.amax(dim=1) if positive else correlation.abs().amax(dim=1)
    if alpha > 0:
        scale = (alpha / worst.clamp(min=torch.finfo(X.dtype).tiny)).clamp(max=1.0)
    else:
        # Least squares: the dual is feasible only where D r = 0.
        scale = torch.where(worst <= 0, 1.0, 0.0).to(X.dtype)
    dual = scale * torch.linalg.vecdot(X, residual) - 0.5 * scale.pow(2) * residual_sq
    return (primal - dual).clamp(min=0), primal


def threshold_codes(X, D, alpha, *, positive=False, correlations=None):
    """Codes by soft thresholding the correlations: ``shrink(X @ D.T, alpha)``.

    The fastest coder (one matrix product), exact for an orthonormal
    dictionary; scikit-learn's ``algorithm="threshold"``.

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
    D : torch.Tensor of shape (k, p)
    alpha : float
        Threshold.
    positive : bool, default=False
        Clip negative codes to zero.
    correlations : torch.Tensor of shape (n, k), default=None
        Precomputed ``X @ D.T``.

    Returns
    -------
    torch.Tensor of shape (n, k)

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import threshold_codes
    >>> threshold_codes(torch.tensor([[3.0, -0.5]]), torch.eye(2), 1.0)
    tensor([[2., -0.]])
    """
    if correlations is None:
        correlations = X @ D.T
    return soft_threshold(correlations, alpha, positive=positive)


def omp(X, D, n_nonzero_coefs, *, gram=None, correlations=None):
    """Orthogonal matching pursuit for every row of ``X`` at once (Batch-OMP).

    Greedily selects, for each sample, the atom most correlated with the
    residual and refits all selected coefficients by least squares, up to
    ``n_nonzero_coefs`` atoms. The least squares use an incrementally updated
    Cholesky factor of the Gram matrix of the selected atoms (Rubinstein, Zibulevsky
    & Elad, 2008), batched over samples, so no sample ever touches ``X`` again
    after the correlations are formed. Selection and stopping follow
    scikit-learn's ``orthogonal_mp_gram``: a sample stops early when its
    residual is orthogonal to every atom or the next atom is linearly dependent
    on the selected ones.

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
        Samples.
    D : torch.Tensor of shape (k, p)
        Dictionary, one atom per row (unit norm for the usual OMP selection
        rule).
    n_nonzero_coefs : int
        Maximum number of atoms per sample (at most ``k``).
    gram, correlations : torch.Tensor, default=None
        Precomputed ``D @ D.T`` and ``X @ D.T``.

    Returns
    -------
    torch.Tensor of shape (n, k)
        Codes with at most ``n_nonzero_coefs`` non-zeros per row.

    References
    ----------
    Rubinstein, R., Zibulevsky, M., & Elad, M. (2008). Efficient implementation
    of the K-SVD algorithm using batch orthogonal matching pursuit. Technion
    CS-2008-08.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import omp
    >>> D = torch.eye(4)
    >>> omp(torch.tensor([[0.0, 3.0, 0.0, -1.0]]), D, 1)
    tensor([[0., 3., 0., 0.]])
    """
    if gram is None:
        gram = D @ D.T
    if correlations is None:
        correlations = X @ D.T
    n_samples, n_components = correlations.shape
    n_steps = min(int(n_nonzero_coefs), n_components)
    dtype, device = correlations.dtype, correlations.device
    codes = correlations.new_zeros((n_samples, n_components))
    if n_samples == 0 or n_steps == 0:
        return codes
    tiny = torch.finfo(dtype).eps
    rows = torch.arange(n_samples, device=device)
    selected = torch.zeros((n_samples, n_steps), dtype=torch.long, device=device)
    chol = correlations.new_zeros((n_samples, n_steps, n_steps))
    rhs = correlations.new_zeros((n_samples, n_steps))
    used = torch.zeros((n_samples, n_components), dtype=torch.bool, device=device)
    done = torch.zeros(n_samples, dtype=torch.bool, device=device)
    residual_corr = correlations
    scale = correlations.abs().amax(dim=1).clamp(min=tiny)
    diagonal = torch.diagonal(gram)
    coefs = None
    for step in range(n_steps):
        scores = residual_corr.abs().masked_fill(used, -1.0)
        best, atom = scores.max(dim=1)
        # Residual (numerically) orthogonal to all atoms: nothing left to add.
        done = done | (best <= 100 * tiny * scale)
        atom_diag = diagonal[atom]
        if step == 0:
            new_diag_sq = atom_diag
            w = None
        else:
            # Solve L w = G[selected, atom] for the new row of the Cholesky factor.
            cross = gram[selected[:, :step], atom[:, None]]  # (n, step)
            w = torch.linalg.solve_triangular(
                chol[:, :step, :step], cross.unsqueeze(-1), upper=False
            ).squeeze(-1)
            new_diag_sq = atom_diag - w.pow(2).sum(dim=1)
        # Linearly dependent atom: stop this sample (as orthogonal_mp_gram does).
        done = done | (new_diag_sq <= 100 * tiny * atom_diag.clamp(min=tiny))
        live = ~done
        # Finished samples get a dummy slot: identity row, zero right-hand side,
        # hence a zero coefficient, so the batch keeps one shape.
        if w is not None:
            chol[:, step, :step] = torch.where(live[:, None], w, torch.zeros_like(w))
        chol[:, step, step] = torch.where(
            live, new_diag_sq.clamp(min=tiny).sqrt(), torch.ones_like(new_diag_sq)
        )
        selected[:, step] = atom
        rhs[:, step] = torch.where(
            live, correlations[rows, atom], torch.zeros_like(atom_diag)
        )
        used[rows, atom] = used[rows, atom] | live
        coefs = torch.cholesky_solve(
            rhs[:, : step + 1, None], chol[:, : step + 1, : step + 1]
        ).squeeze(-1)
        if step + 1 < n_steps:
            if bool(done.all()):
                break
            # Correlations of the new residual: C - coefs @ G[selected].
            residual_corr = correlations - torch.einsum(
                "ns,nsk->nk", coefs, gram[selected[:, : step + 1]]
            )
    n_slots = coefs.shape[1]
    codes.scatter_add_(1, selected[:, :n_slots], coefs)
    return codes

