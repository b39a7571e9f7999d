"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module's torch code with one thread, then restore the count.

    For modules of small matrix products (sparse coders) and for the scaling
    tests, whose Dask/Ray workers run with OMP_NUM_THREADS=1: the in-process
    reference then uses the same thread count (same float reductions), and on
    a loaded 2-core machine two torch threads per process run several times
    slower (oversubscription).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
