"""Device, dtype, seeding and batching helpers (plain torch)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_replearn._utils import (
    as_tensor,
    batched_apply,
    resolve_device,
    seeded,
    to_numpy,
)


def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name, match", [
    ("gpu", "not a device name"),
    ("meta", "not supported"),
])
def test_resolve_device_rejects_unknown(name, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_cuda_missing(name):
    with pytest.raises(ValueError, match="torch.cuda.is_available"):
        resolve_device(name)


def test_as_tensor_copies_read_only_arrays_and_casts():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    array.flags.writeable = False
    tensor = as_tensor(array)
    assert tensor.dtype == torch.float32
    tensor[0, 0] = 100  # must not touch the read-only array
    assert array[0, 0] == 0
    assert as_tensor(sp.csr_matrix(np.eye(3))).shape == (3, 3)


def test_to_numpy_casts():
    assert to_numpy(torch.ones(2), dtype=np.float64).dtype == np.float64


def test_seeded_is_repeatable_and_restores_global_state():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with seeded(5):
        first = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with seeded(5):
        again = torch.rand(3)
    with seeded(5, offset=1):
        shifted = torch.rand(3)
    assert torch.equal(first, again)
    assert not torch.equal(first, shifted)


def test_batched_apply_preserves_order_dtype_and_batches():
    X = np.arange(20, dtype=np.float64).reshape(10, 2)
    sizes = []

    def double(batch):
        sizes.append(len(batch))
        return batch * 2

    out = batched_apply(double, sp.csr_matrix(X), n_outputs=2, batch_size=4,
                        device=torch.device("cpu"), out_dtype=np.float64)
    assert sizes == [4, 4, 2]
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, X * 2)


@settings(max_examples=30, deadline=None)
@given(n_samples=st.integers(1, 40), batch_size=st.integers(1, 50))
def test_batched_apply_equals_one_pass(n_samples, batch_size):
    """Any batch size gives the same rows as applying the function at once."""
    X = np.random.RandomState(n_samples).rand(n_samples, 3).astype(np.float32)
    weight = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    out = batched_apply(lambda batch: batch @ weight, X, n_outputs=2,
                        batch_size=batch_size, device=torch.device("cpu"),
                        out_dtype=np.float32)
    np.testing.assert_allclose(out, X @ weight.numpy(), rtol=1e-6)
