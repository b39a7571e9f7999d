"""Dictionary initialisation and the online dictionary updates of Mairal et al.

The dictionary ``D`` has one atom per row, shape ``(k, p)``. Online dictionary
learning keeps two sufficient statistics of all codes seen so far,
``A = sum z.T @ z`` of shape ``(k, k)`` and ``B = sum z.T @ x`` of shape
``(k, p)``, and minimises the surrogate ``0.5 * tr(D.T A D) - tr(D.T B)`` over
atoms of norm at most one by block-coordinate descent, one atom at a time.
Random draws use torch's global generator: run them inside
``torch.manual_seed`` first for repeatable results.
"""

import math

import numpy as np
import torch

# The fixed point of the sweep's scales: most solves, and the relative
# change of every scale (in units of the dtype's epsilon) that ends them.
_FIXED_POINT_STEPS = 12
_FIXED_POINT_TOL = 8

__all__ = [
    "init_dictionary",
    "project_atoms",
    "update_dictionary",
    "update_inner_stats",
]


def project_atoms(D, *, positive=False):
    """Project each row of ``D`` onto the unit ball (non-negative part first).

    Modifies ``D`` in place and returns it.
    """
    if positive:
        D.clamp_(min=0)
    norms = torch.linalg.vector_norm(D, dim=1, keepdim=True)
    D.div_(norms.clamp(min=1.0))
    return D


def init_dictionary(X, n_components, *, positive=False):
    """Initial atoms: the top right singular vectors of ``X``, then data rows.

    The first ``min(n_components, rank)`` atoms are the leading right singular
    vectors of ``X`` (as scikit-learn's ``MiniBatchDictionaryLearning``);
    any further atoms are randomly chosen rows of ``X`` plus 1% noise. All
    atoms are scaled to unit norm.

    Parameters
    ----------
    X : torch.Tensor of shape (n, p)
        Training samples (a random subset is enough).
    n_components : int
        Number of atoms ``k``.
    positive : bool, default=False
        Make the atoms non-negative (singular vectors are sign-flipped to their
        larger positive part, then clipped).

    Returns
    -------
    torch.Tensor of shape (k, p)

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import init_dictionary
    >>> X = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    >>> init_dictionary(X, 10).shape
    torch.Size([10, 6])
    """
    n_samples, n_features = X.shape
    n_svd = min(n_components, n_samples, n_features)
    atoms = []
    if n_svd > 0:
        singular = _top_right_singular_vectors(X, n_svd)
        if positive:
            flip = singular.clamp(min=0).sum(1) < (-singular).clamp(min=0).sum(1)
            singular = torch.where(flip[:, None], -singular, singular)
        atoms.append(singular)
    n_rest = n_components - n_svd
    if n_rest > 0:
        atoms.append(_noisy_samples(X, n_rest))
    D = torch.cat(atoms, dim=0) if atoms else X.new_zeros((0, n_features))
    if positive:
        D.clamp_(min=0)
    norms = torch.linalg.vector_norm(D, dim=1, keepdim=True)
    # A zero atom (e.g. constant data, clipped by positivity) becomes a random one.
    dead = norms.squeeze(1) <= 1e-12
    if bool(dead.any()):
        fresh = torch.randn((int(dead.sum()), n_features), dtype=D.dtype,
                            device=D.device)
        D[dead] = fresh.abs() if positive else fresh
        norms = torch.linalg.vector_norm(D, dim=1, keepdim=True)
    return D / norms


def _top_right_singular_vectors(X, n_vectors):
    """The leading ``n_vectors`` right singular vectors of ``X`` (rows), from
    an eigendecomposition of the smaller Gram matrix: faster than an SVD of
    ``X`` (which would cost most of a small fit's time), and as accurate for the
    leading directions, which are all an initial dictionary needs. Directions
    of (numerically) zero singular value come back as zero rows."""
    n_samples, n_features = X.shape
    # In float64 where the device has it: the Gram matrix squares the
    # condition number.
    work = X if X.device.type == "mps" else X.to(torch.float64)
    if n_features <= n_samples:
        _, vectors = torch.linalg.eigh(work.T @ work)
        return vectors.flip(1)[:, :n_vectors].T.to(X.dtype)
    values, vectors = torch.linalg.eigh(work @ work.T)
    values, vectors = values.flip(0)[:n_vectors], vectors.flip(1)[:, :n_vectors]
    # v = X.T u / s; a direction the data do not span gives a zero row.
    scale = values.clamp(min=0).sqrt()
    keep = scale > scale[0].clamp(min=1e-300) * 1e-6
    rows = (work.T @ vectors).T / torch.where(keep, scale, 1.0)[:, None]
    return (rows * keep[:, None]).to(X.dtype)


def update_inner_stats(A, B, Z, X, step, *, forget_exponent=1.0):
    """Fold one minibatch of codes into the sufficient statistics, in place.

    Past statistics are down-weighted by a forgetting factor ``beta`` on the
    schedule of scikit-learn's ``MiniBatchDictionaryLearning``, raised to the
    power ``forget_exponent`` ("scaling the past data", Mairal et al. 2010,
    section 3.4). With exponent 1 (scikit-learn's choice) the weight of
    minibatch ``s`` grows about like ``s``, with 0 all weigh the same, and
    larger exponents forget the early codes, computed with a poor
    dictionary, sooner (``s**4`` for 4).

    Parameters
    ----------
    A : torch.Tensor of shape (k, k)
    B : torch.Tensor of shape (k, p)
    Z : torch.Tensor of shape (batch, k)
        Codes of the minibatch.
    X : torch.Tensor of shape (batch, p)
        The minibatch.
    step : int
        Number of minibatch steps taken before this one.
    forget_exponent : float, default=1.0
        Exponent on scikit-learn's forgetting factor (0: never forget, every
        minibatch weighs the same).

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import update_inner_stats
    >>> A, B = torch.ones(2, 2), torch.ones(2, 3)
    >>> Z, X = torch.eye(2), torch.ones(2, 3)
    >>> update_inner_stats(A, B, Z, X, step=1)  # beta = 3 / 5
    >>> A
    tensor([[1.1000, 0.6000],
            [0.6000, 1.1000]])
    """
    batch_size = X.shape[0]
    if step < batch_size - 1:
        theta = (step + 1) * batch_size
    else:
        theta = batch_size**2 + step + 1 - batch_size
    beta = ((theta + 1 - batch_size) / (theta + 1)) ** forget_exponent
    A.addmm_(Z.T, Z, beta=beta, alpha=1.0 / batch_size)
    B.addmm_(Z.T, X, beta=beta, alpha=1.0 / batch_size)


def update_dictionary(D, A, B, X, Z=None, *, positive=False):
    """One sweep of block-coordinate descent on the atoms (Mairal et al. 2010,
    algorithm 2).

    Each atom ``d_j`` moves to the minimiser of the surrogate with the other
    atoms fixed, ``d_j + (B_j - A_j @ D) / A_jj``, then is projected onto the
    unit ball (after clipping negatives when ``positive``). An atom that no
    code uses (``A_jj`` at most ``1e-6`` times the mean of ``A``'s diagonal:
    scikit-learn's absolute ``1e-6`` depends on the data's scale) is
    replaced by a sample of ``X`` plus 1% noise, and its column of ``Z``
    (when given) is zeroed, as scikit-learn does; with ``Z`` given, the samples are
    those that the codes reconstruct worst, distinct ones (scikit-learn draws
    random rows).

    Parameters
    ----------
    D : torch.Tensor of shape (k, p)
        Dictionary, updated in place.
    A : torch.Tensor of shape (k, k)
    B : torch.Tensor of shape (k, p)
        Sufficient statistics.
    X : torch.Tensor of shape (batch, p)
        The current minibatch (source of replacement atoms).
    Z : torch.Tensor of shape (batch, k), default=None
        The minibatch's codes over ``D`` before this update (they rank the
        samples for replacement atoms); columns of resampled atoms are zeroed
        in place.
    positive : bool, default=False
        Keep the atoms non-negative.

    Returns
    -------
    n_unused : int
        Number of atoms resampled.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import update_dictionary
    >>> X = torch.eye(3)
    >>> D = torch.full((3, 3), 0.5)
    >>> update_dictionary(D, torch.eye(3), X.clone(), X)
    0
    >>> D
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    """
    diagonal = torch.diagonal(A).tolist()
    # "Unused" relative to the atoms' mean use: A grows with the square of
    # the data's scale, and an absolute threshold (scikit-learn's 1e-6)
    # found every atom unused on data around 1e-3 (the objective then ended
    # 2.6 times too high, and all codes were zero at 1e-4).
    threshold = 1e-6 * sum(diagonal) / max(len(diagonal), 1)
    used = [j for j, value in enumerate(diagonal) if value > threshold]
    unused = [j for j, value in enumerate(diagonal) if value <= threshold]
    source = X
    if unused and Z is not None and len(unused) <= X.shape[0]:
        # The samples the codes explain worst: new atoms where the dictionary
        # is missing something (K-SVD's choice), rather than random rows,
        # which may duplicate an atom (e.g. flat image patches, all nearly
        # collinear once standardised).
        residual = torch.linalg.vector_norm(torch.addmm(X, Z, D, alpha=-1.0), dim=1)
        source = X[residual.topk(len(unused)).indices]
    _sweep(D, A, B, diagonal, used, positive)
    if unused and X.shape[0] > 0:
        index = torch.tensor(unused, device=D.device)
        D[index] = project_atoms(_noisy_samples(source, len(unused)),
                                 positive=positive)
        if Z is not None:
            Z[:, index] = 0
    return len(unused)


def _sweep(D, A, B, diagonal, used, positive):
    """The atoms ``used``, in order, each to its minimiser given the others.

    With the diagonal of A taken out, the atom's update reads
    ``u = B_j - A_j @ D`` (the other atoms, as updated so far), and
    ``d_j = u / max(A_jj, ||u||)``: the minimiser over ``d_j``, ``u / A_jj``,
    projected onto the unit ball. Sequentially, that is one small operation
    after another, whose cost is their dispatch: without clipping, the sweep
    is a triangular solve once the scales ``max(A_jj, ||u_j||)`` are known
    (:func:`_sweep_by_solves`, a few launches in all on an accelerator); on
    the CPU it is a loop over NumPy views of the same memory, whose calls
    cost a fraction of torch's.
    """
    A_off = A - torch.diag_embed(torch.diagonal(A))
    if (D.device.type == "cpu" and D.dtype in (torch.float32, torch.float64)
            and not (D.requires_grad or A.requires_grad or B.requires_grad)):
        # Measured at k=50: the NumPy loop took a fifth of the CPU time of
        # the solves, each of whose dozens of torch calls costs more.
        _sweep_numpy(D.numpy(), A_off.numpy(), B.numpy(), diagonal, used,
                     positive)
        return
    if not positive and len(used) > 1 and _sweep_by_solves(D, A, A_off, B, used):
        return
    atoms, B_rows, A_rows = D.unbind(0), B.unbind(0), A_off.unbind(0)
    DT = D.T  # a view: the updates below write through it
    for j in used:
        update = torch.addmv(B_rows[j], DT, A_rows[j], alpha=-1.0)
        if positive:
            update.clamp_(min=0)
        scale = torch.linalg.vector_norm(update).clamp_(min=diagonal[j])
        torch.div(update, scale, out=atoms[j])


def _sweep_by_solves(D, A, A_off, B, used):
    """The sweep of :func:`_sweep` (no clipping) as a fixed point of
    triangular solves, written into ``D``; False, ``D`` untouched, if the
    fixed point was not reached.

    Atom ``j`` of the sweep solves ``s_j d_j + sum_{i<j} A_ji d_i = B_j -
    sum_{i>j} A_ji d_i`` (new atoms before it, old ones after) with
    ``s_j = max(A_jj, ||u_j||)`` and ``u_j = s_j d_j``: given the scales, one
    lower-triangular solve gives every atom. Iterating scales -> atoms ->
    scales from the atoms' one-at-a-time scales reaches the sweep's own
    scales: the first atom's after one solve, the second's after two at
    most, and in practice all of them (to rounding) after 3-6. Unused atoms
    get the identity row and their old value.
    """
    k = D.shape[0]
    is_used = torch.zeros(k, dtype=torch.bool, device=D.device)
    is_used[used] = True
    # Scale floors (the atoms' A_jj; 1 for unused atoms, whose row is the
    # identity), the fixed lower part and the right-hand sides.
    floor = torch.where(is_used, torch.diagonal(A), 1.0)
    system = torch.tril(A_off).mul_(is_used[:, None])
    right = torch.where(is_used[:, None], torch.addmm(B, torch.triu(A_off), D,
                                                       alpha=-1.0), D)
    # The start: every atom's scale as if it came first.
    scale = torch.linalg.vector_norm(torch.addmm(B, A_off, D, alpha=-1.0), dim=1)
    scale = torch.where(is_used, scale.maximum(floor), 1.0)
    tolerance = _FIXED_POINT_TOL * torch.finfo(D.dtype).eps
    for _ in range(_FIXED_POINT_STEPS):
        system.diagonal().copy_(scale)
        atoms = torch.linalg.solve_triangular(system, right, upper=False)
        new_scale = torch.maximum(
            torch.linalg.vector_norm(atoms, dim=1).mul_(scale), floor)
        change = float((new_scale - scale).abs_().div_(scale).max())
        if change <= tolerance:
            # Within rounding of the sweep; the projection keeps every atom
            # in the unit ball exactly.
            D.copy_(project_atoms(atoms))
            return True
        scale = new_scale
    return False


def _sweep_numpy(D, A_off, B, diagonal, used, positive):
    """:func:`_sweep` on NumPy arrays (``D`` written in place)."""
    update = np.empty(D.shape[1], dtype=D.dtype)
    # Row views and functions bound once: the loop's cost is its calls.
    atoms, A_rows, B_rows = list(D), list(A_off), list(B)
    dot, subtract, divide, sqrt = np.dot, np.subtract, np.divide, math.sqrt
    for j in used:
        dot(A_rows[j], D, out=update)
        subtract(B_rows[j], update, out=update)
        if positive:
            np.maximum(update, 0, out=update)
        divide(update, max(sqrt(float(dot(update, update))), diagonal[j]),
               out=atoms[j])


def _noisy_samples(X, n_atoms):
    """``n_atoms`` random rows of ``X`` plus 1% noise (of each row's spread):
    new atoms where the data is, for atoms that the initial SVD cannot provide
    or that no code uses. Zero rows when ``X`` has none."""
    n_samples, n_features = X.shape
    # Distinct rows while there are enough: two atoms made from one row would
    # be near duplicates, which the codes then split between, and which make
    # every support system that holds both badly conditioned.
    if n_atoms <= n_samples:
        picks = torch.randperm(n_samples, device=X.device)[:n_atoms]
    else:
        picks = torch.randint(0, max(n_samples, 1), (n_atoms,), device=X.device)
    rows = X[picks] if n_samples else X.new_zeros((n_atoms, n_features))
    # One feature has no spread; a constant row gets unit noise.
    spread = rows.std(dim=1, keepdim=True) if n_features > 1 else None
    if spread is None or not torch.isfinite(spread).all():
        spread = torch.ones_like(rows[:, :1])
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    return rows + 0.01 * spread * torch.randn_like(rows)
