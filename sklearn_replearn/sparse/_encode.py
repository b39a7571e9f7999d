"""Inference coders: one function from a batch to its codes, by name.

``DictionaryLearner.transform`` and ``score`` choose a coder by its
scikit-learn name and apply it batch by batch; what each batch shares (the
Gram matrix, its largest eigenvalue) is computed once here.

The coders run batch-invariant (``fixed_rows``): a row's codes do not depend
on which other rows are coded with it, so coding a set all at once, in
batches, or row by row gives the same codes.
"""

from ._coders import check_fixed_rows, lipschitz_constant, omp, threshold_codes
from ._working_set import lasso_working_set

__all__ = ["LASSO_ALGORITHMS", "TRANSFORM_ALGORITHMS", "make_coder"]

#: scikit-learn's names for the lasso (``transform_algorithm``): all are solved
#: by the same certified coder here (same problem, same solution).
LASSO_ALGORITHMS = frozenset({"lasso_fista", "lasso_lars", "lasso_cd"})
#: Every ``transform_algorithm`` :func:`make_coder` accepts: the lasso names,
#: ``"omp"`` and ``"threshold"``.
TRANSFORM_ALGORITHMS = LASSO_ALGORITHMS | {"omp", "threshold"}

# Rows per product chunk in batch-invariant mode. On the CPU the chunks of a
# batch are multiplied in one batched product, and small chunks waste little
# on padding (less than chunks of 512 rows do). A GPU multiplies the chunks
# one by one: larger chunks there.
_FIXED_ROWS = {"cpu": 128}
_FIXED_ROWS_OTHER = 1024


def make_coder(D, algorithm, *, alpha, n_nonzero_coefs=None, max_iter=1000,
               tol=1e-4, positive=False, fixed_rows="auto"):
    """A function mapping a batch ``(n, p)`` to its codes ``(n, k)`` over ``D``.

    Parameters
    ----------
    D : torch.Tensor of shape (k, p)
        Dictionary, one atom per row.
    algorithm : {"lasso_fista", "lasso_lars", "lasso_cd", "omp", "threshold"}
        The coder (the three lasso names solve the same lasso by working sets
        and FISTA, certified by the duality gap).
    alpha : float
        L1 penalty of the lasso, or the threshold.
    n_nonzero_coefs : int, default=None
        Atoms per sample for ``"omp"`` (required there).
    max_iter, tol : int, float
        The lasso coder's iteration budget and relative duality-gap target.
    positive : bool, default=False
        Non-negative codes (lasso and threshold).
    fixed_rows : "auto", int or None, default="auto"
        Rows per chunk of every product (see :func:`lasso_fista`), so that a
        row's codes do not depend on the other rows of its batch. ``"auto"``:
        128 on the CPU, 1024 on other devices; None: products on whole
        batches (not batch-invariant).

    Returns
    -------
    callable

    Examples
    --------
    >>> import torch
    >>> from sklearn_replearn.sparse import make_coder
    >>> code = make_coder(torch.eye(3), "threshold", alpha=1.0)
    >>> code(torch.tensor([[2.0, 0.5, -3.0]]))
    tensor([[ 1.,  0., -2.]])
    """
    if isinstance(fixed_rows, str) and fixed_rows == "auto":
        fixed_rows = _FIXED_ROWS.get(D.device.type, _FIXED_ROWS_OTHER)
    fixed_rows = check_fixed_rows(fixed_rows)
    gram = D @ D.T
    if algorithm in LASSO_ALGORITHMS:
        lipschitz = lipschitz_constant(gram)

        def code(batch):
            Z, _ = lasso_working_set(batch, D, alpha, max_iter=max_iter, tol=tol,
                                     positive=positive, gram=gram,
                                     lipschitz=lipschitz, fixed_rows=fixed_rows)
            return Z

    elif algorithm == "omp":

        def code(batch):
            return omp(batch, D, n_nonzero_coefs, gram=gram, fixed_rows=fixed_rows)

    elif algorithm == "threshold":

        def code(batch):
            return threshold_codes(batch, D, alpha, positive=positive,
                                   fixed_rows=fixed_rows)

    else:
        # Never a silent default: an unknown name once fell through to
        # thresholding and returned the wrong codes without a word.
        raise ValueError(
            f"Unknown transform_algorithm {algorithm!r}; use one of "
            f"{sorted(TRANSFORM_ALGORITHMS)}."
        )
    return code
