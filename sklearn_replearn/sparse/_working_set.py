"""The lasso by working sets: small problems on each sample's likely atoms.

A lasso code over many atoms uses few of them (digits patches, k=256: about 5,
at most ~20), yet each FISTA iteration over the full dictionary costs
``n * k * k``. Here each sample gets a working set of ``w`` atoms (its current
support first, then the atoms that most violate the optimality conditions),
FISTA runs on the ``w x w`` problems of all samples at once (batched products,
``n * w * w`` per iteration, with each sample's own step size), and every
sample's code is then certified on the *full* problem by its duality gap.
Uncertified samples get a twice larger working set and another round; any
left after ``max_rounds`` are finished by plain FISTA. The stopping rule is
the same certificate as ``lasso_fista``'s, so the codes meet the same
tolerance: only the route there is shorter.

In batch-invariant mode (``fixed_rows``), each sample's working-set width
is its own (its previous width doubled, at least twice its support, on a
ladder of ``working_size`` times powers of two) and the samples of each width
are solved together in chunks of a fixed row count, so no sample's width,
steps or rounds depend on the other rows of the batch. Otherwise the batch
shares the widest sample's width, one batched problem per round.
"""

import torch

from ._coders import (
    check_fixed_rows,
    fista_rows,
    lasso_duality_gap,
    lasso_fista,
    lasso_start,
    lipschitz_constant,
    map_row_chunks,
    soft_threshold,
)

__all__ = ["lasso_working_set"]

# Dictionaries this small run plain FISTA: there a full iteration is already
# cheap, and working sets only pay on larger dictionaries.
_PLAIN_FISTA_MAX_ATOMS = 64
# Most floats in one batch of (rows, width, width) working-set Gram matrices.
_GATHER_BUDGET = 1 << 24
# The same in batch-invariant mode, where the last chunk of each width is
# padded: smaller, so that coding a few rows stays cheap.
_FIXED_GATHER = 1 << 20


def lasso_working_set(
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
    working_size=8,
    inner_iter=40,
    max_rounds=6,
    fixed_rows=None,
):
    """Solve the lasso for every row of ``X`` by working sets, certified on all atoms.

    Same problem, arguments and guarantee as :func:`lasso_fista`: each sample's
    objective ``0.5 * ||x - z @ D||^2 + alpha * ||z||_1`` ends within a factor
    ``1 + tol`` of its optimum (by its duality gap). With at most 64 atoms,
    or ``alpha == 0``, it is ``lasso_fista``.

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
    D : torch.Tensor of shape (k, p)
        Dictionary, one atom per row.
    alpha : float
        Weight of the L1 penalty.
    init : torch.Tensor of shape (n, k), default=None
        Starting codes (their supports seed the working sets).
    max_iter : int, default=1000
        Iterations in all: working-set rounds count ``inner_iter`` each, and
        plain FISTA finishes the samples still uncertified with the rest.
    tol : float, default=1e-4
        Relative duality gap at which a sample is solved.
    positive : bool, default=False
        Constrain the codes to be non-negative.
    gram, correlations : torch.Tensor, default=None
        Precomputed ``D @ D.T`` and ``X @ D.T``.
    lipschitz : float, default=None
        Precomputed largest eigenvalue of ``gram`` (for plain FISTA).
    working_size : int, default=8
        Atoms per sample in the first round (at least twice the atoms a warm
        start uses; doubled each round).
    inner_iter : int, default=40
        FISTA iterations on the working sets per round.
    max_rounds : int, default=6
        Rounds (while a sample's working set is at most a quarter of the
        dictionary) before the remaining samples are finished by plain FISTA.
    fixed_rows : int, default=None
        Batch-invariant mode (see :func:`lasso_fista`): every product runs on
        a fixed number of rows, so each sample's codes are the same whatever
        the other rows of ``X``.

    Returns
    -------
    Z : torch.Tensor of shape (n, k)
    n_iter : int
        Iterations run by the slowest sample: ``inner_iter`` per working-set
        round, plus those of the plain-FISTA finish, if any.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import lasso_duality_gap, lasso_working_set
    >>> g = torch.Generator().manual_seed(0)
    >>> D = torch.nn.functional.normalize(torch.randn(200, 30, generator=g), dim=1)
    >>> X = torch.randn(50, 30, generator=g)
    >>> Z, n_iter = lasso_working_set(X, D, alpha=1.0, tol=1e-4)
    >>> gap, primal = lasso_duality_gap(X, D, Z, 1.0)
    >>> bool((gap <= 1e-4 * primal).all())
    True
    """
    fixed_rows = check_fixed_rows(fixed_rows)
    n_components = D.shape[0]
    if alpha == 0 or n_components <= _PLAIN_FISTA_MAX_ATOMS or X.shape[0] == 0:
        return lasso_fista(X, D, alpha, init=init, max_iter=max_iter, tol=tol,
                           positive=positive, gram=gram, correlations=correlations,
                           lipschitz=lipschitz, fixed_rows=fixed_rows)
    X, gram, correlations, Z = lasso_start(X, D, init, positive, gram, correlations,
                                           fixed_rows)
    n_samples, device = X.shape[0], X.device
    # Largest eigenvalue of the whole Gram matrix: it bounds every submatrix's.
    if lipschitz is None:
        lipschitz = lipschitz_constant(gram)
    counts = torch.zeros(n_samples, dtype=torch.long, device=device)
    width = torch.full((n_samples,), working_size, dtype=torch.long, device=device)
    rows = torch.arange(n_samples, device=device)  # unsolved, still in rounds
    finish = []  # the samples left to plain FISTA
    n_iter = 0  # the same for every sample still in rounds
    top = n_components // 4
    for _ in range(max_rounds):
        if rows.numel() == 0 or n_iter + inner_iter > max_iter:
            break
        # Room for every atom in use plus as many candidates. Beyond a
        # quarter of the dictionary, plain FISTA is as fast.
        in_use = (Z[rows] != 0).sum(dim=1)
        need = torch.maximum(width[rows], 2 * in_use)
        if fixed_rows is None:
            # One width for the batch, the widest need: one batched problem
            # per round, the fastest for a single batch (as inside fit).
            widths = need = need.max().expand_as(need)
        else:
            # Each row's own need, rounded up to a rung of a ladder (few
            # widths, few groups) whose top rung is that quarter.
            widths = (working_size * 2 ** torch.ceil(
                torch.log2(need.double() / working_size)).long().clamp(min=0)
            ).clamp(max=top)
        wide = need > top
        finish.append(rows[wide])
        rows, widths = rows[~wide], widths[~wide]
        solved = torch.zeros(rows.numel(), dtype=torch.bool, device=device)
        for value in torch.unique(widths).tolist():
            members = torch.nonzero(widths == value).squeeze(1)
            group = rows[members]
            codes, certified = _round(X[group], Z[group], correlations[group], D,
                                      gram, alpha, value, inner_iter, positive,
                                      lipschitz, tol, fixed_rows)
            Z[group] = codes
            solved[members] = certified
        width[rows] = 2 * widths
        counts[rows] += inner_iter
        n_iter += inner_iter
        rows = rows[~solved]
    finish.append(rows)
    rows = torch.cat(finish)
    if rows.numel():
        rest, rest_counts = fista_rows(
            X[rows], D, correlations[rows], Z[rows], max_iter - counts[rows], alpha,
            tol=tol, positive=positive, gram=gram, lipschitz=lipschitz,
            fixed_rows=fixed_rows)
        Z[rows] = rest
        counts[rows] += rest_counts
    return Z, int(counts.max())


def _round(X, Z, C, D, gram, alpha, width, n_iter, positive, lipschitz, tol,
           fixed_rows):
    """One working-set round for rows of one width: their new codes, and
    whether each is certified (a row whose round went wrong keeps its codes)."""
    if fixed_rows is None:
        chunk = max(1, _GATHER_BUDGET // (width * width))
    else:
        # Chunks of a fixed row count for each width (whole 16-row tiles),
        # the last one padded: about a million Gram entries, at most twice
        # the product chunks of plain FISTA (a few rows stay cheap to code).
        chunk = max(16, min(2 * fixed_rows, _FIXED_GATHER // (width * width))
                    // 16 * 16)

    def solve(X, Z, C):
        codes = _solve_on_working_sets(Z, C, gram, alpha, width, n_iter, positive,
                                       lipschitz)
        failed = ~torch.isfinite(codes).all(dim=1)
        codes = torch.where(failed[:, None], Z, codes)
        gap, primal = lasso_duality_gap(X, D, codes, alpha, positive=positive)
        return codes, gap <= tol * primal  # NaN gaps are not solved

    if fixed_rows is None:
        parts = [solve(*(t[part] for t in (X, Z, C)))
                 for part in torch.arange(X.shape[0], device=X.device).split(chunk)]
        return tuple(torch.cat(p) for p in zip(*parts))
    return map_row_chunks(solve, [X, Z, C], chunk)


def _solve_on_working_sets(Z, C, gram, alpha, width, n_iter, positive, lipschitz):
    """FISTA on each row's ``width`` likeliest atoms; returns full-width codes."""
    # Priority: the current support, then the largest optimality violations
    # |c_j - (z G)_j| (positive codes: the largest positive ones).
    violation = C - Z @ gram
    if not positive:
        violation = violation.abs()
    priority = torch.where(Z != 0, torch.inf, violation)
    atoms = priority.topk(width, dim=1).indices                      # (m, w)
    gram_w = gram[atoms.unsqueeze(2), atoms.unsqueeze(1)]             # (m, w, w)
    corr_w = torch.gather(C, 1, atoms)
    z = torch.gather(Z, 1, atoms)
    step = 1.0 / _step_bounds(gram_w, lipschitz)                     # (m, 1)
    threshold = alpha * step
    y, t = z, 1.0
    for _ in range(n_iter):
        gradient = torch.bmm(y.unsqueeze(1), gram_w).squeeze(1) - corr_w
        z_new = soft_threshold(y - step * gradient, threshold, positive=positive)
        t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        y = torch.lerp(z_new, z, -(t - 1.0) / t_new)  # z_new + m * (z_new - z)
        z, t = z_new, t_new
    return torch.zeros_like(Z).scatter_(1, atoms, z)


def _step_bounds(matrices, lipschitz, n_iter=10):
    """Each PSD matrix's largest eigenvalue, estimated from above, shape (m, 1).

    A power-iteration estimate with a 10% margin, kept between two sure
    bounds: the largest diagonal entry (below it, the eigenvalue cannot be)
    and the smaller of ``lipschitz`` (the whole Gram matrix's) and the
    Gershgorin bound (above them, it cannot be). Too small a value would let
    FISTA diverge on that sample; the caller's certificate would reject it.
    """
    n, w = matrices.shape[:2]
    # An irregular start vector: all-ones is orthogonal to the top
    # eigenvector of symmetric atom sets such as {+u, -u} (the bounds below
    # keep the step safe should this one be unlucky too).
    start = torch.cos(torch.arange(1, w + 1, dtype=matrices.dtype,
                                   device=matrices.device) * 1.7)
    v = start.expand(n, w).unsqueeze(2)
    for _ in range(n_iter):
        v = torch.bmm(matrices, v)
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp(min=1e-30)
    estimate = 1.1 * (torch.bmm(matrices, v) * v).sum(dim=1)
    below = torch.diagonal(matrices, dim1=1, dim2=2).amax(dim=1, keepdim=True)
    above = matrices.abs().sum(dim=2).amax(dim=1, keepdim=True).clamp(max=lipschitz)
    tiny = torch.finfo(matrices.dtype).tiny
    return torch.minimum(torch.maximum(estimate, below), above).clamp(min=tiny)
