"""The one place that knows about devices, dtypes, seeding and array <-> tensor.

Every estimator goes through these helpers so that device resolution, float32
compute and repeatable seeding behave the same way everywhere.
"""

import threading
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state

__all__ = [
    "as_tensor",
    "batched_apply",
    "fixed_batch_rows",
    "iter_row_batches",
    "map_tensors",
    "padded_rows",
    "resolve_device",
    "seed_from_random_state",
    "seeded",
    "to_numpy",
]

COMPUTE_DTYPE = torch.float32


def resolve_device(device):
    """Turn a ``device`` parameter into a :class:`torch.device` that exists here.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the device is unknown or not available on this machine.

    Examples
    --------
    >>> from sklearn_replearn._utils import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} asks for CUDA, but torch.cuda.is_available() is "
                "False on this machine; use device='cpu' or device='auto'."
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device={device!r} asks for CUDA device {resolved.index}, but only "
                f"{count} CUDA device(s) are visible; use 'cuda:0'..'cuda:{count - 1}'."
            )
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device={device!r} asks for Apple's MPS, which is not available on "
                "this machine; use device='cpu' or device='auto'."
            )
    elif resolved.type != "cpu":
        raise ValueError(
            f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        )
    return resolved


def as_tensor(X, device="cpu", dtype=COMPUTE_DTYPE):
    """Convert a dense array (or a scipy sparse block) to a tensor on ``device``.

    The array is shared with the tensor when it already has the right dtype and
    layout, except for read-only arrays (memory maps), which are copied because
    torch cannot wrap them safely.

    Parameters
    ----------
    X : ndarray, scipy sparse matrix or torch.Tensor
        Data to convert. Sparse input is densified: pass it one batch at a time.
    device : str or torch.device, default="cpu"
        Where the tensor should live.
    dtype : torch.dtype, default=torch.float32
        The compute dtype.

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_replearn._utils import as_tensor
    >>> as_tensor(np.ones((2, 3))).dtype
    torch.float32
    """
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    if sp.issparse(X):
        X = X.toarray()
    numpy_dtype = torch.empty((), dtype=dtype).numpy().dtype
    array = np.ascontiguousarray(X, dtype=numpy_dtype)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(device)


def to_numpy(tensor, dtype=None):
    """Copy a tensor to a numpy array on the CPU, optionally casting it.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn._utils import to_numpy
    >>> to_numpy(torch.zeros(2), dtype="float64").dtype
    dtype('float64')
    """
    array = tensor.detach().to("cpu").numpy()
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array


# torch has one global generator per device: a seeded block in one thread
# would draw the numbers another thread's block seeded (four fits in joblib's
# threading backend gave codes 0.02-0.07 apart from the same fits in turn).
# Seeded blocks therefore run one at a time within a process; parallel fits
# belong in processes (joblib's default backend, Dask workers).
_SEEDED_LOCK = threading.RLock()


def seed_from_random_state(random_state):
    """Draw a torch seed from an sklearn-style ``random_state``.

    An int always gives the same seed; a ``RandomState`` is advanced, as in
    scikit-learn; ``None`` gives a fresh seed from numpy's global generator.
    """
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextmanager
def seeded(random_state, device=None, offset=0):
    """Run a block with torch's RNG seeded from ``random_state``.

    torch's global RNG state (CPU, and the CUDA or MPS device in use) is saved
    before the block and restored after it, and no other device's generator is
    touched, so fitting a model never changes the random
    numbers a user's own code draws afterwards, and the same ``random_state``
    always gives the same result. Blocks in different threads of one
    process run one at a time (torch's generators are global).

    Parameters
    ----------
    random_state : int, RandomState instance or None
        Seed source, as in scikit-learn.
    device : torch.device, default=None
        Device whose RNG is also forked (CUDA); CPU is always forked.
    offset : int, default=0
        Added to the seed, so that successive calls (``partial_fit``) with the
        same ``random_state`` draw different numbers, repeatably.

    Yields
    ------
    seed : int
        The torch seed used inside the block.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn._utils import seeded
    >>> with seeded(0):
    ...     a = torch.rand(2)
    >>> with seeded(0):
    ...     b = torch.rand(2)
    >>> bool(torch.equal(a, b))
    True
    """
    with _SEEDED_LOCK:
        yield from _seeded(random_state, device, offset)


def _seeded(random_state, device, offset):
    seed = (seed_from_random_state(random_state) + offset) % np.iinfo(np.int32).max
    device = None if device is None else torch.device(device)
    # Only the generators that are forked (saved and restored) are seeded:
    # torch.manual_seed would also reseed every other CUDA/MPS device's global
    # generator and leave them changed after the block.
    if device is not None and device.type == "cuda":
        index = device.index if device.index is not None else (
            torch.cuda.current_device())
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.random.default_generator.manual_seed(seed)
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
            yield seed
    elif device is not None and device.type == "mps":
        with torch.random.fork_rng(device_type="mps"):
            torch.random.default_generator.manual_seed(seed)
            torch.mps.manual_seed(seed)
            yield seed
    else:
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            yield seed


def iter_row_batches(n_samples, batch_size):
    """Yield ``slice`` objects covering ``range(n_samples)`` in order."""
    for start in range(0, n_samples, batch_size):
        yield slice(start, min(start + batch_size, n_samples))


def batched_apply(function, X, *, n_outputs, batch_size, device, out_dtype,
                  fixed_shape=False):
    """Apply a tensor function to the rows of ``X`` one batch at a time.

    Only one batch of the input is on the device at a time and the result is
    written into a preallocated array, so memory grows with the output, not
    with a float copy of the input. Sparse input is densified batch by batch.

    With ``fixed_shape=True`` every batch ``function`` sees is made of whole
    16-row tiles (padded with zero rows, whose outputs are dropped; see
    :func:`fixed_batch_rows`): float32 kernels may round the rows of a
    partial tile differently (~1e-7), and a row's output must not depend on
    which other rows are transformed with it. A batch is padded to the tiles
    its rows need, not to ``batch_size``, so the cost follows the data (one
    row costs one tile, whatever ``batch_size``). Use it for row-wise
    functions (a network's layers), where padding cannot change the other
    rows.

    Parameters
    ----------
    function : callable
        Maps a float32 tensor of shape ``(batch, n_features)`` to a tensor of
        shape ``(batch, n_outputs)``.
    X : ndarray or scipy sparse matrix of shape (n_samples, n_features)
        Input rows.
    n_outputs : int
        Width of the output.
    batch_size : int
        Rows per batch.
    device : torch.device
        Where ``function`` runs.
    out_dtype : numpy dtype
        dtype of the returned array (the input's float dtype).
    fixed_shape : bool, default=False
        Pad each batch to whole 16-row tiles.

    Returns
    -------
    ndarray of shape (n_samples, n_outputs)
    """
    if sp.issparse(X):
        X = X.tocsr()
    output = np.empty((X.shape[0], n_outputs), dtype=out_dtype)
    with torch.inference_mode():
        for rows in iter_row_batches(X.shape[0], batch_size):
            batch = as_tensor(X[rows], device=device)
            if fixed_shape:
                batch = padded_rows(batch, fixed_batch_rows(len(batch)))
            output[rows] = to_numpy(function(batch)[:rows.stop - rows.start])
    return output


def fixed_batch_rows(batch_size):
    """Rows of a padded batch: ``batch_size`` rounded up to a multiple of 16.

    CPU matrix-multiply kernels work on tiles of rows; in a batch whose row
    count is not a multiple of the tile, the rows of the last, partial tile
    go through another kernel and round differently (measured ~7e-8 with 7
    rows, none with multiples of 8). Whole tiles make a row's result the same
    at every position of the batch.
    """
    return -(-batch_size // 16) * 16


def padded_rows(batch, n_rows):
    """``batch`` with zero rows appended up to ``n_rows`` rows (at least)."""
    missing = n_rows - batch.shape[0]
    if missing <= 0:
        return batch
    return torch.cat([batch, batch.new_zeros((missing, *batch.shape[1:]))])


def map_tensors(tree, function):
    """``tree`` (nested dicts, lists and tuples) with ``function`` applied to
    each tensor or numpy array leaf.

    Turns optimizer state dicts into numpy (plain data, picklable anywhere)
    and back.

    Examples
    --------
    >>> map_tensors({"step": torch.tensor(3.0), "groups": [1, 2]}, to_numpy)
    {'step': array(3., dtype=float32), 'groups': [1, 2]}
    """
    if isinstance(tree, dict):
        return {key: map_tensors(value, function) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_tensors(value, function) for value in tree)
    if isinstance(tree, (torch.Tensor, np.ndarray)):
        return function(tree)
    return tree
