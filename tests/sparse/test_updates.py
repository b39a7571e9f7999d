"""The dictionary update's sweep: its triangular-solve form (what runs off
the CPU) gives the atoms of the one-atom-at-a-time loop."""

import pytest
import torch

from sklearn_replearn.sparse._updates import _sweep_by_solves, _sweep_numpy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sweep_by_solves_matches_the_sequential_sweep(dtype):
    rng = torch.Generator().manual_seed(0)
    X = torch.randn(200, 30, generator=rng, dtype=dtype)
    mask = torch.rand(200, 40, generator=rng, dtype=dtype) < 0.2
    Z = torch.randn(200, 40, generator=rng, dtype=dtype) * mask
    Z[:, 7] = 0  # an unused atom: it keeps its old value in both
    A, B = Z.T @ Z / 200, Z.T @ X / 200
    D = torch.nn.functional.normalize(torch.randn(40, 30, generator=rng,
                                                  dtype=dtype), dim=1)
    diagonal = torch.diagonal(A)
    used = [j for j in range(40) if j != 7]
    A_off = A - torch.diag_embed(diagonal)
    expected, D_solves = D.clone(), D.clone()
    _sweep_numpy(expected.numpy(), A_off.numpy(), B.numpy(), diagonal.tolist(),
                 used, False)
    assert _sweep_by_solves(D_solves, A, A_off, B, used)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(D_solves, expected, atol=100 * eps, rtol=0)
    assert torch.equal(D_solves[7], D[7])
    assert float(torch.linalg.vector_norm(D_solves, dim=1).max()) <= 1 + 4 * eps
    # The atoms moved: the comparison is not of two untouched copies.
    assert float((expected - D).abs().max()) > 0.1
