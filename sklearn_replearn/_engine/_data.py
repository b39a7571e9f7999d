"""Training data for the engine's nets: rows fetched a whole batch at a time.

skorch's default ``DataLoader`` collates batches sample by sample, which costs
a large share of a small MLP's step on a CPU; these slice whole batches out of
one tensor instead.
"""


import numpy as np
import scipy.sparse as sp
import torch

from .._utils import as_tensor

__all__ = ["RowBatchLoader", "RowDataset"]


class RowDataset(torch.utils.data.Dataset):
    """Rows of a dense tensor or of a scipy CSR matrix, fetched a batch at a time.

    Dense data is held as one float32 tensor on the training device, so a batch
    is one indexing operation. Sparse data stays sparse on the host and only the
    current batch is densified.
    """

    def __init__(self, X, device):
        self.device = device
        if sp.issparse(X):
            self.data = X.tocsr()
        else:
            self.data = as_tensor(X, device=device)

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        return self.batch(np.atleast_1d(index))[0]

    def batch(self, indices):
        """Return the rows ``indices`` (a tensor or array) as a float32 tensor."""
        if sp.issparse(self.data):
            rows = self.data[np.asarray(indices.cpu() if torch.is_tensor(indices)
                                        else indices)]
            return as_tensor(rows, device=self.device)
        if torch.is_tensor(indices):
            indices = indices.to(self.data.device)
        return self.data[indices]


class RowBatchLoader:
    """Iterate over a :class:`RowDataset` in (optionally shuffled) whole batches.

    Yields ``(X_batch, X_batch)``: for a reconstruction the target is the input.
    Shuffling uses torch's global RNG, which the estimators seed and fork
    (``_utils.seeded``), so runs are repeatable. When shuffling (training), a
    last batch of one row joins the batch before it: a BatchNorm in your own
    module cannot train on one row (257 rows in batches of 128 failed).
    """

    def __init__(self, dataset, batch_size, shuffle=False):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self):
        return len(self._bounds())

    def _bounds(self):
        """(start, stop) of each batch."""
        n_samples, size = len(self.dataset), self.batch_size
        bounds = [(start, min(start + size, n_samples))
                  for start in range(0, n_samples, size)]
        if self.shuffle and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds[-2:] = [(bounds[-2][0], n_samples)]
        return bounds

    def __iter__(self):
        n_samples = len(self.dataset)
        data = self.dataset.data
        if self.shuffle and not sp.issparse(data):
            # The permutation is drawn on the CPU (the same stream on every
            # device), then indexes the tensor where it lives.
            order = torch.randperm(n_samples).to(data.device)
            for start, stop in self._bounds():
                batch = data[order[start:stop]]
                yield batch, batch
        elif self.shuffle:
            order = torch.randperm(n_samples)
            for start, stop in self._bounds():
                batch = self.dataset.batch(order[start:stop])
                yield batch, batch
        elif sp.issparse(data):
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.batch(np.arange(start, min(start + self.batch_size,
                                                                n_samples)))
                yield batch, batch
        else:
            # Contiguous slices of the tensor: no copy at all.
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.data[start:start + self.batch_size]
                yield batch, batch
