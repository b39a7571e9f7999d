"""The torch sparse coders and dictionary updates against scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import sparse_encode

from sklearn_replearn.sparse import (
    _active_set,
    differentiable_lasso_codes,
    init_dictionary,
    lasso_active_set,
    lasso_duality_gap,
    lasso_fista,
    lasso_objective,
    lasso_working_set,
    lipschitz_constant,
    omp,
    soft_threshold,
    threshold_codes,
    update_dictionary,
    update_inner_stats,
)
from sklearn_replearn.sparse._coders import fista_rows
from sklearn_replearn.sparse._rows import (
    _matmul_chunk_by_chunk,
    check_fixed_rows,
    matmul_rows,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_problem():
    """Digits in [0, 1] and a coherent dictionary made of noisy digits."""
    X = load_digits().data[:400] / 16.0
    rng = np.random.RandomState(0)
    D = X[rng.choice(len(X), 48, replace=False)] + 0.05 * rng.randn(48, 64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    return X, D


def _objective(X, D, Z, alpha):
    return 0.5 * ((X - Z @ D) ** 2).sum(1) + alpha * np.abs(Z).sum(1)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.1, 1.0])
@pytest.mark.parametrize("positive", [False, True])
def test_fista_matches_lasso_lars_objective(digits_problem, alpha, positive):
    X, D = digits_problem
    reference = sparse_encode(
        X, D, algorithm="lasso_lars", alpha=alpha, positive=positive
    )
    Z, n_iter = lasso_fista(
        torch.tensor(X, dtype=torch.float32),
        torch.tensor(D, dtype=torch.float32),
        alpha,
        positive=positive,
    )
    Z = Z.double().numpy()
    ours = _objective(X, D, Z, alpha).mean()
    theirs = _objective(X, D, reference, alpha).mean()
    assert ours <= theirs * 1.01
    # Not (meaningfully) better than LARS either: same problem, same optimum.
    assert ours >= theirs * (1 - 1e-3)
    if positive:
        assert Z.min() >= 0
    # The codes are sparse, with nearly the same supports as LARS.
    agreement = ((Z != 0) == (reference != 0)).mean()
    assert agreement > 0.97
    assert 1 <= n_iter <= 1000


def test_fista_warm_start_needs_fewer_iterations(digits_problem):
    X, D = map(lambda a: torch.tensor(a, dtype=torch.float32), digits_problem)
    cold, n_cold = lasso_fista(X, D, 0.2, tol=1e-4)
    warm, n_warm = lasso_fista(X, D, 0.2, tol=1e-4, init=cold)
    assert n_cold > 100
    # Started at a solution, every sample passes the first gap check.
    assert n_warm == 10
    cold_objective = lasso_objective(X, D, cold, 0.2)
    torch.testing.assert_close(lasso_objective(X, D, warm, 0.2), cold_objective,
                               rtol=2e-4, atol=0)


@pytest.mark.slow
def test_fista_duality_gap_certifies_the_objective(digits_problem):
    X, D = digits_problem
    X, D = torch.tensor(X), torch.tensor(D)
    exact, _ = lasso_fista(X, D, 0.3, tol=1e-13, max_iter=50000)
    optimum = lasso_objective(X, D, exact, 0.3)
    for tol in (1e-2, 1e-4):
        Z, n_iter = lasso_fista(X, D, 0.3, tol=tol)
        excess = lasso_objective(X, D, Z, 0.3) / optimum - 1
        # Every sample within its certified factor, and not trivially so.
        assert float(excess.max()) <= tol
        assert float(excess.max()) > tol / 1000
    gap, primal = lasso_duality_gap(X, D, exact, 0.3)
    assert float((gap / primal).max()) < 1e-12
    torch.testing.assert_close(primal, optimum)
    # Looser tolerances stop sooner.
    assert lasso_fista(X, D, 0.3, tol=1e-2)[1] < lasso_fista(X, D, 0.3, tol=1e-6)[1]


@pytest.mark.slow
def test_fista_float64_is_exact_to_tolerance(digits_problem):
    X, D = digits_problem
    reference = sparse_encode(X, D, algorithm="lasso_lars", alpha=0.5)
    Z, _ = lasso_fista(torch.tensor(X), torch.tensor(D), 0.5, tol=1e-12,
                       max_iter=20000)
    np.testing.assert_allclose(Z.numpy(), reference, atol=1e-5)


@pytest.fixture(scope="module")
def overcomplete_problem():
    """8x8 digit patches and 192 coherent atoms (noisy patches): an
    overcomplete dictionary, where working sets pay off."""
    images = load_digits().images[:300] / 16.0
    rng = np.random.RandomState(0)
    rows, cols = rng.randint(0, 5, 600), rng.randint(0, 5, 600)
    X = np.stack([np.pad(images[i % 300], 2)[r:r + 8, c:c + 8].ravel()
                  for i, (r, c) in enumerate(zip(rows, cols))])
    D = X[rng.choice(len(X), 192, replace=False)] + 0.1 * rng.randn(192, 64)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    return X, D


@pytest.mark.slow
@pytest.mark.parametrize("positive", [False, True])
def test_working_set_lasso_matches_lasso_lars_and_certifies_each_sample(
        overcomplete_problem, positive):
    X, D = overcomplete_problem
    alpha = 0.5
    reference = sparse_encode(X, D, algorithm="lasso_lars", alpha=alpha,
                              positive=positive)
    X_t, D_t = torch.tensor(X), torch.tensor(D)
    for tol in (1e-2, 1e-4):
        Z, n_iter = lasso_working_set(X_t, D_t, alpha, tol=tol, positive=positive)
        gap, primal = lasso_duality_gap(X_t, D_t, Z, alpha, positive=positive)
        assert bool((gap <= tol * primal).all())
        ours = _objective(X, D, Z.numpy(), alpha)
        theirs = _objective(X, D, reference, alpha)
        # Each sample within its certified factor of LARS's (exact) optimum.
        assert (ours <= theirs * (1 + tol) + 1e-9).all()
        assert ours.mean() >= theirs.mean() * (1 - 1e-6)
    if positive:
        assert float(Z.min()) >= 0
    # Far fewer full-dictionary products than plain FISTA needs.
    _, fista_iter = lasso_fista(X_t, D_t, alpha, tol=1e-4, positive=positive)
    assert fista_iter > 100 and n_iter < fista_iter


@pytest.mark.slow
def test_working_set_lasso_delegates_small_problems_and_finishes_hard_ones(
        digits_problem, overcomplete_problem):
    X, D = map(torch.tensor, digits_problem)  # 48 atoms: plain FISTA
    torch.testing.assert_close(lasso_working_set(X, D, 0.3)[0],
                               lasso_fista(X, D, 0.3)[0], rtol=0, atol=0)
    X, D = map(torch.tensor, overcomplete_problem)
    # No working-set round at all: plain FISTA finishes every sample.
    Z, _ = lasso_working_set(X, D, 0.5, tol=1e-4, max_rounds=0)
    gap, primal = lasso_duality_gap(X, D, Z, 0.5)
    assert bool((gap <= 1e-4 * primal).all())
    # A warm start near the solution takes fewer rounds than a cold one.
    _, n_cold = lasso_working_set(X, D, 0.5, tol=1e-4)
    warm, n_warm = lasso_working_set(X, D, 0.5, tol=1e-4, init=Z)
    assert n_warm < n_cold
    torch.testing.assert_close(lasso_objective(X, D, warm, 0.5),
                               lasso_objective(X, D, Z, 0.5), rtol=2e-4, atol=0)


def test_working_set_lasso_on_symmetric_atoms_and_within_max_iter():
    # Atoms +u and -u: an all-ones power-iteration start is orthogonal to the
    # top eigenvector of such working sets (step sizes of ~1e37 gave NaN
    # codes that compared as "certified").
    g = torch.Generator().manual_seed(0)
    U = torch.nn.functional.normalize(torch.randn(64, 20, generator=g), dim=1)
    D = torch.cat([U, -U])
    X = torch.randn(30, 20, generator=g)
    Z, n_iter = lasso_working_set(X, D, 0.5, tol=1e-4)
    assert bool(torch.isfinite(Z).all())
    gap, primal = lasso_duality_gap(X, D, Z, 0.5)
    assert bool((gap <= 1e-4 * primal).all())
    # max_iter bounds all iterations, rounds included.
    assert lasso_working_set(X, D, 0.5, tol=1e-12, max_iter=50)[1] <= 50


@pytest.mark.slow
@pytest.mark.parametrize("positive", [False, True])
@pytest.mark.parametrize("problem", ["digits_problem", "overcomplete_problem"])
def test_active_set_lasso_matches_lasso_lars_cold_and_warm(request, problem,
                                                           positive):
    X, D = request.getfixturevalue(problem)
    alpha = 0.5
    reference = _objective(X, D, sparse_encode(X, D, algorithm="lasso_lars",
                                               alpha=alpha, positive=positive),
                           alpha)
    X_t, D_t = torch.tensor(X), torch.tensor(D)
    # Cold: Newton steps from zero, with the first-order finish.
    Z, _ = lasso_active_set(X_t, D_t, alpha, tol=1e-4, positive=positive)
    gap, primal = lasso_duality_gap(X_t, D_t, Z, alpha, positive=positive)
    assert bool((gap <= 1e-4 * primal).all())
    assert (_objective(X, D, Z.numpy(), alpha) <= reference * (1 + 1e-4) + 1e-9).all()
    if positive:
        assert float(Z.min()) >= 0
    # Warm, from the codes over a slightly moved dictionary (as between
    # epochs of a fit): a few Newton steps solve every sample, where FISTA
    # needs far more iterations.
    rng = np.random.RandomState(1)
    moved = D + 0.01 * rng.randn(*D.shape)
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    M_t = torch.tensor(moved)
    # max_iter=8: Newton steps only, no first-order finish.
    warm, _ = lasso_active_set(X_t, M_t, alpha, init=Z, tol=1e-4, positive=positive,
                               max_iter=8)
    gap, primal = lasso_duality_gap(X_t, M_t, warm, alpha, positive=positive)
    assert bool((gap <= 1e-4 * primal).all())
    _, fista_iter = lasso_fista(X_t, M_t, alpha, init=Z, tol=1e-4, positive=positive)
    assert fista_iter > 200


def test_active_set_lasso_survives_dependent_atoms_and_respects_max_iter(
        monkeypatch):
    # Atoms +u, -u and a duplicate of u: singular support systems (Cholesky
    # failures) must neither give NaN codes nor count as solved.
    g = torch.Generator().manual_seed(0)
    U = torch.nn.functional.normalize(torch.randn(20, 10, generator=g), dim=1)
    D = torch.cat([U, -U, U[:5]])
    X = torch.randn(40, 10, generator=g)
    Z, _ = lasso_active_set(X, D, 0.3, tol=1e-4)
    assert bool(torch.isfinite(Z).all())
    gap, primal = lasso_duality_gap(X, D, Z, 0.3)
    assert bool((gap <= 1e-4 * primal).all())
    # Without the ridge, those supports give singular systems: the failed
    # Cholesky rows come back as NaN, and the solver still returns finite,
    # certified codes (a failed step never counts as solved).
    monkeypatch.setattr(_active_set, "_RIDGE", 0.0)
    twins = torch.tensor([[True, False, True]])
    system_rows = _active_set._solve_supports(
        torch.ones(1, 3), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0],
                                         [1.0, 0.0, 1.0]]),
        twins, torch.ones(1, 3), 0.1, width=2)
    assert bool(torch.isnan(system_rows).any())
    Z, _ = lasso_active_set(X, D, 0.3, tol=1e-4)
    assert bool(torch.isfinite(Z).all())
    gap, primal = lasso_duality_gap(X, D, Z, 0.3)
    assert bool((gap <= 1e-4 * primal).all())
    monkeypatch.undo()
    # max_iter bounds Newton steps and the finish together.
    assert lasso_active_set(X, D, 0.3, tol=1e-12, max_iter=5)[1] <= 5
    assert lasso_active_set(X, D, 0.3, tol=1e-12, max_iter=20)[1] <= 20
    # alpha = 0 (least squares) is handed to the first-order coders.
    Z0, _ = lasso_active_set(X, D[:8], 0.0, tol=1e-6, max_iter=5000)
    np.testing.assert_allclose((Z0 @ D[:8]).numpy(),
                               (torch.linalg.lstsq(D[:8].T, X.T).solution.T
                                @ D[:8]).numpy(), atol=1e-3)


def test_active_set_lasso_keeps_best_codes_and_limits_new_atoms(digits_problem):
    X, D = map(torch.tensor, digits_problem)
    # From zero, one step may add at most max_new_atoms atoms per sample.
    for limit in (1, 3):
        Z, _ = lasso_active_set(X, D, 0.1, max_iter=1, max_new_atoms=limit)
        assert int((Z != 0).sum(dim=1).max()) <= limit
    # Newton steps are not monotone, but the codes returned never have a
    # higher objective than the start, whatever the step budget.
    start, _ = lasso_fista(X, D, 0.1, max_iter=15, tol=0.0)
    for budget in (1, 2, 12):
        Z, _ = lasso_active_set(X, D, 0.1, init=start, max_iter=budget, tol=1e-12)
        assert bool((lasso_objective(X, D, Z, 0.1)
                     <= lasso_objective(X, D, start, 0.1) + 1e-12).all())


@pytest.mark.parametrize("positive", [False, True])
def test_active_set_gram_gaps_agree_with_residual_gaps(digits_problem, positive):
    # The online steps' objectives and gaps from the Gram matrix (no product
    # with D) are the residuals' ones up to float32 rounding: the same codes
    # from the same Newton steps, objectives within 1e-5, and a sample is
    # certified by one exactly when by the other (tol far above rounding).
    X, D = (torch.tensor(a, dtype=torch.float32) for a in digits_problem)
    warm, _ = lasso_fista(X, D, 0.1, max_iter=30, tol=0.0, positive=positive)
    for init in (None, warm):
        results = [
            _active_set.active_set_codes(
                X, D, 0.1, init=init, max_iter=2, tol=1e-2, positive=positive,
                max_newton=2, max_new_atoms=1, gram_gaps=gram_gaps)
            for gram_gaps in (False, True)]
        (Z_exact, n_exact, obj_exact), (Z_gram, n_gram, obj_gram) = results
        assert n_exact == n_gram
        torch.testing.assert_close(Z_gram, Z_exact, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(obj_gram, lasso_objective(X, D, Z_gram, 0.1),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(obj_gram, obj_exact, rtol=1e-5, atol=1e-5)
    # Gaps, on codes near and far from the optimum.
    norms = torch.linalg.vecdot(X, X)
    C = X @ D.T
    for Z in (warm, torch.zeros_like(warm), 2 * warm):
        gap, primal, residual = _active_set._gram_gap(
            norms, C, Z, Z @ (D @ D.T), 0.1, positive)
        gap_ref, primal_ref = lasso_duality_gap(X, D, Z, 0.1, positive=positive)
        torch.testing.assert_close(primal, primal_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gap, gap_ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(residual, (X - Z @ D) @ D.T, rtol=1e-4,
                                   atol=1e-5)


def test_support_systems_solve_each_rows_support():
    # Each row's support system, gathered with identity padding up to the
    # batch's widest support, solves as a dense system on that support does:
    # rows with supports of different sizes (and an empty one) side by side.
    g = torch.Generator().manual_seed(0)
    D = torch.nn.functional.normalize(torch.randn(7, 12, generator=g), dim=1)
    gram = D @ D.T
    active = torch.tensor([[True, False, True, False, False, True, False],
                           [False] * 7,
                           [False, True, False, False, False, False, True]])
    rhs = torch.randn(3, 7, generator=g)
    width = int(active.sum(dim=1).max())
    solution = _active_set._solve_gathered(_active_set._Layout(gram), active, rhs,
                                           width)
    for row in range(3):
        support = torch.nonzero(active[row]).squeeze(1)
        expected = torch.zeros(7)
        if support.numel():
            system = gram[support][:, support]
            system = system + _active_set._RIDGE * system.diagonal().max() * \
                torch.eye(support.numel())
            expected[support] = torch.linalg.solve(system, rhs[row, support])
        torch.testing.assert_close(solution[row], expected, rtol=1e-4, atol=1e-5)


def _sparse_problem(n_samples=300, n_features=100, n_components=50, n_nonzero=5,
                    seed=0):
    rng = np.random.RandomState(seed)
    D = rng.randn(n_components, n_features)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = np.zeros((n_samples, n_components))
    for row in Z:
        support = rng.choice(n_components, n_nonzero, replace=False)
        row[support] = rng.uniform(1, 2, n_nonzero) * rng.choice([-1, 1], n_nonzero)
    return Z @ D + 0.01 * rng.randn(n_samples, n_features), D


@pytest.mark.parametrize("n_nonzero", [1, 5, 8])
def test_omp_identical_supports_to_sklearn(n_nonzero):
    X, D = _sparse_problem()
    reference = sparse_encode(X, D, algorithm="omp", n_nonzero_coefs=n_nonzero)
    codes = omp(
        torch.tensor(X, dtype=torch.float32),
        torch.tensor(D, dtype=torch.float32),
        n_nonzero,
    ).double().numpy()
    np.testing.assert_array_equal(codes != 0, reference != 0)
    np.testing.assert_allclose(codes, reference, atol=1e-4)
    assert ((codes != 0).sum(1) == n_nonzero).all()


def test_omp_on_digits_matches_sklearn_in_float64(digits_problem):
    X, D = digits_problem
    reference = sparse_encode(X, D, algorithm="omp", n_nonzero_coefs=6)
    codes = omp(torch.tensor(X), torch.tensor(D), 6).numpy()
    np.testing.assert_allclose(codes, reference, atol=1e-8)


def test_omp_stops_on_zero_residual_and_dependent_atoms():
    D = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    D = torch.nn.functional.normalize(D, dim=1)
    X = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, -3.0, 0.0]])
    codes = omp(X, D, 3)
    assert torch.equal(codes[0], torch.zeros(3))
    torch.testing.assert_close(codes[1], torch.tensor([2.0, 0.0, 0.0]))
    # Two atoms explain the third row exactly; the dependent third is never used.
    assert int((codes[2] != 0).sum()) == 2
    torch.testing.assert_close(codes[2] @ D, X[2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("positive", [False, True])
def test_threshold_matches_sklearn(digits_problem, positive):
    X, D = digits_problem
    reference = sparse_encode(X, D, algorithm="threshold", alpha=0.7,
                              positive=positive)
    codes = threshold_codes(torch.tensor(X), torch.tensor(D), 0.7, positive=positive)
    np.testing.assert_allclose(codes.numpy(), reference, atol=1e-12)


def test_soft_threshold_is_the_l1_prox():
    z = torch.linspace(-3, 3, 13)
    expected = torch.where(z.abs() > 1, z - torch.sign(z), torch.zeros_like(z))
    torch.testing.assert_close(soft_threshold(z, 1.0), expected)
    torch.testing.assert_close(soft_threshold(z, 1.0, positive=True),
                               expected.clamp(min=0))


def test_dictionary_update_decreases_surrogate_and_projects():
    X, D_true = _sparse_problem(n_samples=400, n_features=30, n_components=20,
                                n_nonzero=3, seed=1)
    X = torch.tensor(X, dtype=torch.float32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        D_init = init_dictionary(X, 25)
        D = torch.nn.functional.normalize(torch.randn(20, 30), dim=1)
    # The leading right singular vectors of X, at unit norm.
    torch.testing.assert_close(torch.linalg.vector_norm(D_init, dim=1),
                               torch.ones(25), atol=1e-5, rtol=0)
    _, _, Vh = torch.linalg.svd(X, full_matrices=False)
    torch.testing.assert_close(D_init[:25].abs(), Vh[:25].abs(), atol=1e-4, rtol=0)
    A = X.new_zeros((20, 20))
    B = X.new_zeros((20, 30))
    Z, _ = lasso_fista(X, D, 0.1)
    update_inner_stats(A, B, Z, X, step=0)

    def surrogate(D):
        return float(0.5 * torch.trace(D.T @ A @ D) - torch.trace(D.T @ B))

    before = surrogate(D)
    update_dictionary(D, A, B, X, Z)
    after = surrogate(D)
    assert after < before - 0.05 * abs(before)
    assert float(torch.linalg.vector_norm(D, dim=1).max()) <= 1 + 1e-6
    # The objective on this batch goes down with the new atoms and new codes.
    Z_new, _ = lasso_fista(X, D, 0.1)
    assert lasso_objective(X, D, Z_new, 0.1).mean() < (
        lasso_objective(X, D, Z, 0.1).mean() * 0.99
    )


def test_dictionary_update_positive_and_resampling():
    rng = torch.Generator().manual_seed(0)
    X = torch.rand(50, 8, generator=rng)
    D = torch.nn.functional.normalize(torch.randn(4, 8, generator=rng), dim=1)
    Z = torch.rand(50, 4, generator=rng)
    Z[:, 3] = 0  # atom 3 is unused: it must be resampled from the data
    A, B = Z.T @ Z / 50, Z.T @ X / 50
    with torch.random.fork_rng():
        torch.manual_seed(0)
        n_unused = update_dictionary(D, A, B, X, Z, positive=True)
    assert n_unused == 1
    assert float(D.min()) >= 0
    assert float(torch.linalg.vector_norm(D, dim=1).max()) <= 1 + 1e-6
    # The replacement atom is close to (a scaled) data row.
    similarity = torch.nn.functional.cosine_similarity(D[3:4], X).max()
    assert float(similarity) > 0.99


@pytest.mark.slow
def test_implicit_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    D = torch.nn.functional.normalize(torch.randn(6, 12, generator=g,
                                                  dtype=torch.float64), dim=1)
    X = torch.randn(4, 12, generator=g, dtype=torch.float64)
    weights = torch.randn(4, 6, generator=g, dtype=torch.float64)
    alpha = 0.3

    def loss_of(D):
        Z, _ = lasso_fista(X, D, alpha, tol=1e-12, max_iter=50000)
        return float((weights * Z).sum())

    D_var = D.clone().requires_grad_(True)
    Z, _ = lasso_fista(X, D, alpha, tol=1e-12, max_iter=50000)
    codes = differentiable_lasso_codes(X, D_var, Z, ridge=0.0)
    torch.testing.assert_close(codes.detach(), Z)
    (weights * codes).sum().backward()
    direction = torch.randn(6, 12, generator=g, dtype=torch.float64)
    eps = 1e-6
    numeric = (loss_of(D + eps * direction) - loss_of(D - eps * direction)) / (2 * eps)
    analytic = float((D_var.grad * direction).sum())
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def _explicit_active_set_codes(X, D, Z, alpha, ridge):
    """The active-set equations as an autograd graph (no custom backward).

    ``(D_S D_S^T + ridge I) z_S = D_S x - alpha s_S + ridge Z_S`` with ``Z``
    held constant: its solution is the lasso solution ``Z`` itself, and its
    derivative is the ridge-regularised implicit derivative at ``Z``.
    """
    mask = (Z != 0).to(D.dtype)
    eye = torch.eye(D.shape[0], dtype=D.dtype)
    system = mask[:, :, None] * (D @ D.T + ridge * eye) * mask[:, None, :]
    system = system + torch.diag_embed(1.0 - mask)
    rhs = mask * (X @ D.T - alpha * torch.sign(Z) + ridge * Z)
    return torch.linalg.solve(system, rhs.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("ridge", [0.0, 1e-2])
def test_implicit_gradient_matches_autograd_through_active_set(digits_problem, ridge):
    X, D = digits_problem
    X = torch.tensor(X[:64])
    D = torch.tensor(D[:24])
    Z, _ = lasso_fista(X, D, 0.2, tol=1e-12, max_iter=50000)
    support = (Z != 0).sum(1)
    assert int(support.max()) < 24 and int(support.min()) >= 1  # padding is used
    weights = torch.randn(Z.shape, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)
    ours = D.clone().requires_grad_(True)
    codes = differentiable_lasso_codes(X, ours, Z, ridge=ridge)
    (weights * codes).sum().backward()
    explicit = D.clone().requires_grad_(True)
    codes = _explicit_active_set_codes(X, explicit, Z, 0.2, ridge)
    torch.testing.assert_close(codes.detach(), Z, atol=1e-6, rtol=0)
    (weights * codes).sum().backward()
    torch.testing.assert_close(ours.grad, explicit.grad, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------ batch invariance
def _invariant_coders(D, fixed_rows):
    """The coders in batch-invariant mode, by name, as functions of a batch."""
    return {
        "fista": lambda X: lasso_fista(X, D, 0.3, fixed_rows=fixed_rows)[0],
        "fista-positive": lambda X: lasso_fista(X, D, 0.3, positive=True,
                                                fixed_rows=fixed_rows)[0],
        "fista-least-squares": lambda X: lasso_fista(X, D, 0.0, max_iter=200,
                                                     fixed_rows=fixed_rows)[0],
        "working-set": lambda X: lasso_working_set(X, D, 0.3,
                                                   fixed_rows=fixed_rows)[0],
        "working-set-positive": lambda X: lasso_working_set(
            X, D, 0.3, positive=True, fixed_rows=fixed_rows)[0],
        "omp": lambda X: omp(X, D, 6, fixed_rows=fixed_rows),
        "threshold": lambda X: threshold_codes(X, D, 0.3, fixed_rows=fixed_rows),
    }


@pytest.mark.slow
@pytest.mark.parametrize("coder", list(_invariant_coders(None, None)))
@pytest.mark.parametrize("problem", ["digits_problem", "overcomplete_problem"])
def test_coders_with_fixed_rows_are_batch_invariant(request, problem, coder):
    # Coded alone, in shuffled subsets or all together, a row gets the same
    # codes bit for bit: every product runs on chunks of fixed_rows rows and
    # no decision (working-set width, stopping, OMP's last solve) depends on
    # the other rows. Without fixed_rows they differed (up to 5e-3 at k=100).
    X, D = request.getfixturevalue(problem)
    D = torch.tensor(D, dtype=torch.float32)
    # Rows that OMP finishes early (an atom, scaled) and a zero row.
    X = torch.cat([torch.tensor(X[:250], dtype=torch.float32), 2 * D[:3],
                   torch.zeros(1, D.shape[1])])
    code = _invariant_coders(D, 32)[coder]
    full = code(X)
    assert int((full != 0).sum()) > X.shape[0]
    rng = np.random.RandomState(0)
    for i in [0, 250, 253, *rng.choice(len(X), 3, replace=False)]:
        torch.testing.assert_close(code(X[i:i + 1])[0], full[i], rtol=0, atol=0)
    for size in (5, 70, len(X)):
        rows = torch.tensor(rng.permutation(len(X))[:size])
        torch.testing.assert_close(code(X[rows]), full[rows], rtol=0, atol=0)


@pytest.mark.slow
def test_fixed_rows_codes_solve_the_same_problem(overcomplete_problem):
    # Batch invariance costs no accuracy: the lasso codes are certified to the
    # same tolerance, and OMP and thresholding agree with the whole-batch
    # products to float32 rounding.
    X, D = (torch.tensor(a, dtype=torch.float32) for a in overcomplete_problem)
    for fixed_rows in (None, 16, 128):
        Z, _ = lasso_working_set(X, D, 0.5, tol=1e-4, fixed_rows=fixed_rows)
        gap, primal = lasso_duality_gap(X, D, Z, 0.5)
        assert bool((gap <= 1e-4 * primal + 1e-6).all())
    torch.testing.assert_close(omp(X, D, 5, fixed_rows=128), omp(X, D, 5),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(threshold_codes(X, D, 0.5, fixed_rows=128),
                               threshold_codes(X, D, 0.5), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_batch_invariance_holds_with_several_threads(overcomplete_problem):
    # Threads split the products and reductions: still the same codes.
    X, D = (torch.tensor(a[:100], dtype=torch.float32) for a in overcomplete_problem)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        full, _ = lasso_working_set(X, D, 0.5, tol=1e-2, fixed_rows=128)
        alone, _ = lasso_working_set(X[7:8], D, 0.5, tol=1e-2, fixed_rows=128)
        torch.testing.assert_close(alone[0], full[7], rtol=0, atol=0)
    finally:
        torch.set_num_threads(previous)


def test_fista_budgets_and_checks_are_per_row(digits_problem):
    # Each row stops on its own: at its own budget, or solved at one of its
    # own checks, whatever the budgets of the rows beside it.
    X, D = (torch.tensor(a, dtype=torch.float32) for a in digits_problem)
    X = X[:40]
    gram = D @ D.T
    common = dict(tol=1e-6, positive=False, gram=gram,
                  lipschitz=lipschitz_constant(gram))
    budget = torch.tensor([3, 1000] * 20)
    # (Correlations computed the same way for every row, as the docs ask.)
    Z, counts = fista_rows(X, D, matmul_rows(X, D.T, 16), torch.zeros(40, D.shape[0]),
                           budget, 0.3, fixed_rows=16, **common)
    assert counts[0::2].tolist() == [3] * 20
    assert int(counts[1::2].min()) > 3
    alone, count = fista_rows(X[:1], D, matmul_rows(X[:1], D.T, 16),
                              torch.zeros(1, D.shape[0]), budget[:1], 0.3,
                              fixed_rows=16, **common)
    torch.testing.assert_close(alone, Z[:1], rtol=0, atol=0)
    assert int(count[0]) == 3
    # No budget at all: the starting codes, untouched.
    start = torch.ones(2, D.shape[0])
    Z, counts = fista_rows(X[:2], D, X[:2] @ D.T, start.clone(),
                           torch.zeros(2, dtype=torch.long), 0.3, **common)
    assert torch.equal(Z, start) and counts.tolist() == [0, 0]


def test_matmul_rows_and_fixed_rows_checks():
    g = torch.Generator().manual_seed(0)
    A, B, C = (torch.randn(*shape, generator=g)
               for shape in [(45, 7), (7, 5), (45, 5)])
    for fixed_rows in (None, 16, 64):
        torch.testing.assert_close(matmul_rows(A, B, fixed_rows), A @ B)
        torch.testing.assert_close(matmul_rows(A, B, fixed_rows, add=C),
                                   torch.addmm(C, A, B))
    assert matmul_rows(A[:0], B, 16).shape == (0, 5)
    # The chunk-by-chunk products used off the CPU give the same rows.
    A, C = (torch.cat([T, T.new_zeros(3, T.shape[1])]) for T in (A, C))
    torch.testing.assert_close(_matmul_chunk_by_chunk(A, B, 16, C),
                               matmul_rows(A, B, 16, add=C), rtol=0, atol=0)
    assert check_fixed_rows(None) is None
    assert check_fixed_rows(100) == 112  # whole 16-row tiles
    for bad in (0, -16, 2.5, True, "16"):
        with pytest.raises(ValueError, match="fixed_rows"):
            lasso_fista(A, B.T, 0.1, fixed_rows=bad)
