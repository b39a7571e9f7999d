"""Batched sparse coders on tensors: FISTA lasso, batch OMP, soft thresholding.

Every coder takes a batch of samples ``X`` of shape ``(n, p)`` and a dictionary
``D`` of shape ``(k, p)`` (one atom per row, as ``components_``) and returns
codes ``Z`` of shape ``(n, k)`` with ``X ~ Z @ D``. The whole batch is solved
at once with matrix products on the Gram matrix ``G = D @ D.T`` and the
correlations ``C = X @ D.T``, so the cost per iteration is one ``(n, k) @ (k, k)``
product whatever the number of samples.

The lasso problem is scaled as in scikit-learn's ``sparse_encode``::

    0.5 * ||x - z @ D||^2 + alpha * ||z||_1      for each sample x

Batch invariance (``fixed_rows``): a float32 product may round a row
differently in batches of other shapes (the library picks its kernel, tiles
and splits of the sum by shape), so a row's codes could depend on which other
rows are coded with it. Given ``fixed_rows``, every coder computes its
products on chunks of exactly that many rows (padded with zero rows), and
treats each row on its own: no step size, width or stopping decision depends
on the other rows, and the remaining operations are elementwise or reduce
within one row, which torch computes the same way at any batch size. A row's
codes are then the same whether it is coded alone, in any subset, or in the
whole set (bit for bit; checked by tests/sparse/test_coders.py).
"""

import torch

from ._rows import (
    _pad_rows,
    _padded_size,
    check_fixed_rows,
    map_row_chunks,
    matmul_rows,
)

__all__ = [
    "lasso_duality_gap",
    "lasso_fista",
    "lasso_objective",
    "lipschitz_constant",
    "map_row_chunks",
    "matmul_rows",
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


def lasso_start(X, D, init, positive, gram=None, correlations=None,
                fixed_rows=None):
    """What every lasso coder starts from: ``X`` in the working dtype, the Gram
    matrix ``D @ D.T``, the correlations ``X @ D.T`` (computed unless given,
    in chunks of ``fixed_rows`` rows if given) and a fresh copy of the
    starting codes (zeros without ``init``; clipped at zero for non-negative
    codes).

    Returns
    -------
    X, gram, correlations, Z : torch.Tensor
    """
    if gram is None:
        gram = D @ D.T
    if correlations is None:
        correlations = matmul_rows(X.to(dtype=D.dtype), D.T, fixed_rows)
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
    fixed_rows=None,
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
    ``check_every`` of its iterations, and the samples whose relative gap is
    below ``tol`` leave the batch, so later iterations only pay for the
    samples still converging.

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
    fixed_rows : int, default=None
        Batch-invariant mode: every product runs on chunks of exactly this
        many rows (rounded up to a multiple of 16; the rows still iterating
        are padded with zero rows), so each sample's codes are the same
        whatever the other rows of ``X`` (``correlations``, if given, must
        then be computed the same way for every row, e.g. by
        ``_rows.matmul_rows``). None: products on all rows at once.

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
    >>> Z_alone, _ = lasso_fista(X[2:3], D, alpha=0.5, fixed_rows=16)
    >>> Z_all, _ = lasso_fista(X, D, alpha=0.5, fixed_rows=16)
    >>> bool(torch.equal(Z_alone[0], Z_all[2]))
    True
    """
    fixed_rows = check_fixed_rows(fixed_rows)
    X, gram, correlations, Z = lasso_start(X, D, init, positive, gram, correlations,
                                           fixed_rows)
    n_samples, n_components = correlations.shape
    if n_samples == 0 or n_components == 0 or max_iter < 1:
        return Z, 0
    if lipschitz is None:
        lipschitz = lipschitz_constant(gram)
    budget = torch.full((n_samples,), int(max_iter), dtype=torch.long,
                        device=Z.device)
    Z, counts = fista_rows(X, D, correlations, Z, budget, alpha, tol=tol,
                           positive=positive, gram=gram, lipschitz=lipschitz,
                           check_every=check_every, fixed_rows=fixed_rows)
    return Z, int(counts.max())


def fista_rows(X, D, correlations, Z, budget, alpha, *, tol, positive, gram,
               lipschitz, check_every=10, fixed_rows=None):
    """The FISTA engine of :func:`lasso_fista`, with a budget for each row.

    Row ``i`` starts from ``Z[i]`` (written over: pass a copy) and runs at
    most ``budget[i]`` iterations (none if 0). Every row is treated on its
    own: its momentum, restarts, checks (every ``check_every`` of its own
    iterations, and at its budget) and stopping depend only on its own
    iterates, and solved rows leave. With ``fixed_rows``, the rows still
    iterating are padded with zero rows to a multiple of ``fixed_rows`` and
    every product runs on chunks of exactly ``fixed_rows`` rows.

    Returns
    -------
    Z : torch.Tensor of shape (n, k)
        The codes (the same tensor as the input ``Z``).
    counts : torch.Tensor of shape (n,), dtype long
        Iterations run by each row.
    """
    n_samples, n_components = correlations.shape
    device, dtype = correlations.device, correlations.dtype
    counts = torch.zeros(n_samples, dtype=torch.long, device=device)
    rows = torch.nonzero(budget > 0).squeeze(1)
    if rows.numel() == 0:
        return Z, counts
    step = 1.0 / lipschitz
    threshold = alpha * step
    # The gradient step Y - step * (Y G - C) as one product: Y (I - step G) + step C.
    eye = torch.eye(n_components, dtype=gram.dtype, device=gram.device)
    propagator = eye - step * gram
    momentum_factors = _momentum_factors(int(budget.max()), dtype, device)
    codes = Z
    # The rows still iterating, in order, then padding (row -1: zeros, which
    # stay zero) up to a multiple of fixed_rows.
    slots = _pad_rows(rows, fixed_rows, value=-1)
    Xs = _pad_rows(X.index_select(0, rows), fixed_rows)
    C = _pad_rows(correlations.index_select(0, rows).mul_(step), fixed_rows)
    Z = _pad_rows(codes.index_select(0, rows), fixed_rows)
    Y = Z.clone()
    age = torch.zeros(slots.shape[0], dtype=torch.long, device=device)
    count = torch.zeros_like(age)
    limit = _pad_rows(budget.index_select(0, rows), fixed_rows, value=1)
    never = 2 ** 62
    while True:
        live = slots >= 0
        # Iterations until the next row reaches a check or its budget.
        to_event = torch.minimum(check_every - count % check_every, limit - count)
        n_steps = int(torch.where(live, to_event, never).min())
        for _ in range(n_steps):
            V = matmul_rows(Y, propagator, fixed_rows, add=C)
            if positive:
                Z_new = V.sub_(threshold).clamp_(min=0)
            else:
                Z_new = torch.nn.functional.softshrink(V, threshold)
            change = Z_new - Z
            # Gradient-based restart: drop the momentum of the samples whose
            # step goes against the last update direction.
            restart = torch.linalg.vecdot(Y - Z_new, change) > 0
            age.add_(1).masked_fill_(restart, 0)
            factor = momentum_factors.index_select(0, age).unsqueeze(1)
            Y = torch.addcmul(Z_new, factor, change)
            Z = Z_new
        count += n_steps
        gap, primal = lasso_duality_gap(Xs, D, Z, alpha, positive=positive,
                                        fixed_rows=fixed_rows)
        solved = gap <= tol * primal
        if alpha == 0:
            # Least squares has no useful dual certificate: fall back to a
            # small change of the codes relative to the sample's largest code.
            scale = Z.abs().amax(dim=1).clamp(min=torch.finfo(dtype).tiny)
            solved |= change.abs().amax(dim=1) <= tol * scale
        # A row leaves at its budget, or solved at one of its own checks.
        leave = live & ((count >= limit) | (solved & (count % check_every == 0)))
        done = torch.nonzero(leave).squeeze(1)
        if done.numel():
            finished = slots.index_select(0, done)
            codes.index_copy_(0, finished, Z.index_select(0, done))
            counts.index_copy_(0, finished, count.index_select(0, done))
            keep = torch.nonzero(live & ~leave).squeeze(1)
            if keep.numel() == 0:
                break
            if _padded_size(keep.numel(), fixed_rows) < slots.shape[0] or (
                    fixed_rows is None):
                slots = _pad_rows(slots.index_select(0, keep), fixed_rows, value=-1)
                Xs, C, Z, Y = (_pad_rows(t.index_select(0, keep), fixed_rows)
                               for t in (Xs, C, Z, Y))
                age, count = (_pad_rows(t.index_select(0, keep), fixed_rows)
                              for t in (age, count))
                limit = _pad_rows(limit.index_select(0, keep), fixed_rows, value=1)
            else:
                # Same padded size: the finished rows become padding in place.
                slots.index_fill_(0, done, -1)
                for tensor in (Xs, C, Z, Y):
                    tensor.index_fill_(0, done, 0)
                age.index_fill_(0, done, 0)
                limit.index_fill_(0, done, 1)
    return codes, counts



def _momentum_factors(n_steps, dtype, device):
    """FISTA's extrapolation factors, looked up by each row's age.

    Entry ``j`` (``j >= 1``) is ``(t_(j-1) - 1) / t_j`` for ``t_0 = 1``,
    ``t_(j+1) = (1 + sqrt(1 + 4 t_j^2)) / 2``: the factor of a row's ``j``-th
    step since its last restart. Entry 0 is 0: a restarting step. The
    recursion runs in ``dtype``, operation by operation, as it once ran on
    each row's momentum, so the codes are those of that formulation.
    """
    factors = _MOMENTUM_FACTORS.get(dtype)
    if factors is None or factors.shape[0] < n_steps + 2:
        length = max(n_steps + 2, 2 * (0 if factors is None else factors.shape[0]))
        # On a vector of rows, as before: torch's vectorised sqrt rounds so.
        momentum = torch.ones(64, dtype=dtype)
        factors = torch.zeros(length, dtype=dtype)
        for j in range(1, length):
            momentum_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * momentum * momentum))
            factors[j] = ((momentum - 1.0) / momentum_new)[0]
            momentum = momentum_new
        _MOMENTUM_FACTORS[dtype] = factors
    return factors[:n_steps + 2].to(device)


# The factors computed so far, by dtype.
_MOMENTUM_FACTORS = {}


def lasso_duality_gap(X, D, Z, alpha, *, positive=False, fixed_rows=None):
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
    fixed_rows : int, default=None
        Compute the products on chunks of this many rows (see
        ``_rows.matmul_rows``), so each row's values do not depend on the
        other rows.

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
    residual = X - matmul_rows(Z, D, fixed_rows)
    residual_sq = residual.pow(2).sum(dim=1)
    primal = 0.5 * residual_sq + alpha * Z.abs().sum(dim=1)
    correlation = matmul_rows(residual, D.T, fixed_rows)
    worst = correlation.amax(dim=1) if positive else correlation.abs().amax(dim=1)
    if alpha > 0:
        scale = (alpha / worst.clamp(min=torch.finfo(X.dtype).tiny)).clamp(max=1.0)
    else:
        # Least squares: the dual is feasible only where D r = 0.
        scale = torch.where(worst <= 0, 1.0, 0.0).to(X.dtype)
    dual = scale * torch.linalg.vecdot(X, residual) - 0.5 * scale.pow(2) * residual_sq
    return (primal - dual).clamp(min=0), primal


def threshold_codes(X, D, alpha, *, positive=False, correlations=None,
                    fixed_rows=None):
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
    fixed_rows : int, default=None
        Batch-invariant mode: compute ``X @ D.T`` on chunks of this many rows
        (see :func:`lasso_fista`).

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
        correlations = matmul_rows(X, D.T, check_fixed_rows(fixed_rows))
    return soft_threshold(correlations, alpha, positive=positive)


def omp(X, D, n_nonzero_coefs, *, gram=None, correlations=None, fixed_rows=None):
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
    fixed_rows : int, default=None
        Batch-invariant mode: ``X @ D.T`` is computed on chunks of this many
        rows and the pursuit runs on chunks of ``8 * fixed_rows`` rows (the
        last one padded), so each row's codes are the same whatever the
        other rows of ``X``.

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
    fixed_rows = check_fixed_rows(fixed_rows)
    if gram is None:
        gram = D @ D.T
    if correlations is None:
        correlations = matmul_rows(X.to(dtype=gram.dtype), D.T, fixed_rows)
    if fixed_rows is None:
        return _omp(correlations, gram, n_nonzero_coefs)
    return map_row_chunks(lambda C: _omp(C, gram, n_nonzero_coefs), [correlations],
                          8 * fixed_rows)


def _omp(correlations, gram, n_nonzero_coefs):
    """Batch-OMP from the correlations ``X @ D.T`` and the Gram matrix."""
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
        solution = torch.cholesky_solve(
            rhs[:, : step + 1, None], chol[:, : step + 1, : step + 1]
        ).squeeze(-1)
        # A finished sample keeps the coefficients of its last live step
        # (its dummy slots would give the same values up to rounding, which
        # would then depend on how long the other samples of the batch run).
        previous = (solution.new_zeros((n_samples, 1)) if coefs is None else
                    torch.nn.functional.pad(coefs, (0, 1)))
        coefs = torch.where(live[:, None], solution, previous)
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

