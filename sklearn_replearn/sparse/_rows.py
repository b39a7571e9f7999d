"""Products on fixed-shape row chunks: results that do not depend on the batch.

A float32 product may round a row differently in batches of other shapes
(the library picks its kernel, tiles and splits of the sum by shape). These
helpers compute on chunks of exactly ``fixed_rows`` rows (padded with zero
rows), so that a row's result is the same whether it is computed alone, in
any subset, or in the whole set. The sparse coders use them when given
``fixed_rows`` (see :mod:`sklearn_replearn.sparse._coders`).
"""

from numbers import Integral

import torch

from .._utils._torch import fixed_batch_rows, padded_rows

__all__ = ["check_fixed_rows", "map_row_chunks", "matmul_rows"]


def check_fixed_rows(fixed_rows):
    """``fixed_rows`` as a positive multiple of 16 (None stays None).

    Whole 16-row tiles: CPU kernels round the rows of a last, partial tile
    differently (see :func:`~sklearn_replearn._utils.fixed_batch_rows`).
    """
    if fixed_rows is None:
        return None
    if isinstance(fixed_rows, bool) or not isinstance(fixed_rows, Integral) or (
            fixed_rows < 1):
        raise ValueError(
            f"fixed_rows must be a positive int or None, got {fixed_rows!r}.")
    return fixed_batch_rows(int(fixed_rows))


def map_row_chunks(function, tensors, fixed_rows):
    """Apply a row-wise ``function`` to chunks of exactly ``fixed_rows`` rows.

    The rows of ``tensors`` (all with the same first dimension) are cut into
    chunks of ``fixed_rows`` rows, the last one padded with zero rows, so
    ``function`` always sees the same shapes and a row's result does not
    depend on the other rows; the padding rows' results are dropped. With
    ``fixed_rows=None``, ``function`` is applied to all rows at once.

    Parameters
    ----------
    function : callable
        Maps tensors of ``m`` rows each to a tensor (or a tuple of tensors)
        of ``m`` rows.
    tensors : sequence of torch.Tensor
        Inputs, each with ``n`` rows.
    fixed_rows : int or None
        Rows per chunk.

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
        The outputs for the ``n`` rows.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse._rows import map_row_chunks
    >>> X = torch.ones(40, 3)
    >>> map_row_chunks(lambda A: A @ torch.ones(3, 2), [X], 16).shape
    torch.Size([40, 2])
    """
    n = tensors[0].shape[0]
    if fixed_rows is None or n == 0:
        return function(*tensors)
    outputs = []
    for start in range(0, n, fixed_rows):
        stop = min(start + fixed_rows, n)
        result = function(*(padded_rows(t[start:stop], fixed_rows) for t in tensors))
        if isinstance(result, tuple):
            outputs.append(tuple(r[:stop - start] for r in result))
        else:
            outputs.append(result[:stop - start])
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outputs))
    return torch.cat(outputs)


def _padded_size(n_rows, fixed_rows):
    """``n_rows`` rounded up to a multiple of ``fixed_rows`` (None: as is)."""
    return n_rows if fixed_rows is None else -(-n_rows // fixed_rows) * fixed_rows


def _pad_rows(tensor, fixed_rows, value=0):
    """``tensor`` with rows of ``value`` appended up to a multiple of ``fixed_rows``."""
    size = _padded_size(tensor.shape[0], fixed_rows)
    if size == tensor.shape[0]:
        return tensor
    padding = tensor.new_full((size - tensor.shape[0], *tensor.shape[1:]), value)
    return torch.cat([tensor, padding])


def matmul_rows(A, B, fixed_rows, *, add=None):
    """``A @ B`` (plus ``add``), computed on chunks of exactly ``fixed_rows``
    rows of ``A`` (the last one padded with zero rows), so that each row's
    result does not depend on how many rows ``A`` has; at once if None.

    On the CPU the chunks are the matrices of one batched product (each is
    an ordinary product of the chunk's shape, as fast as one product of
    all rows); elsewhere they are multiplied one by one, since a GPU
    library may choose its kernel by the number of matrices in a batch.

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse._rows import matmul_rows
    >>> A, B = torch.randn(40, 5), torch.randn(5, 3)
    >>> bool(torch.equal(matmul_rows(A, B, 16)[7], matmul_rows(A[7:8], B, 16)[0]))
    True
    """
    if fixed_rows is None or A.shape[0] == 0:
        return A @ B if add is None else torch.addmm(add, A, B)
    n_rows = A.shape[0]
    A = _pad_rows(A, fixed_rows)
    add = None if add is None else _pad_rows(add, fixed_rows)
    if A.device.type == "cpu":
        n_chunks = A.shape[0] // fixed_rows
        A = A.reshape(n_chunks, fixed_rows, A.shape[1])
        B = B.contiguous().expand(n_chunks, *B.shape)
        if add is None:
            out = torch.bmm(A, B)
        else:
            out = torch.baddbmm(add.reshape(n_chunks, fixed_rows, -1), A, B)
        return out.reshape(-1, out.shape[2])[:n_rows]
    return _matmul_chunk_by_chunk(A, B, fixed_rows, add)[:n_rows]


def _matmul_chunk_by_chunk(A, B, fixed_rows, add=None):
    """``A @ B`` (plus ``add``), one product per chunk of ``fixed_rows`` rows
    (``A`` has a multiple of ``fixed_rows`` rows)."""
    adds = [None] * (A.shape[0] // fixed_rows) if add is None else add.split(fixed_rows)
    return torch.cat([a @ B if c is None else torch.addmm(c, a, B)
                      for a, c in zip(A.split(fixed_rows), adds)])
