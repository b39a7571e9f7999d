"""The training engine: the one module that imports skorch.

Estimators build a :class:`ReconstructionNet` with :func:`make_net` inside
``fit`` and keep it as ``net_``. Compared with a plain ``skorch.NeuralNet``:

* batches are sliced whole out of one tensor (:class:`RowBatchLoader`) instead
  of being collated sample by sample, which costs ~40% on small MLPs;
* there is no silent validation split: one exists only when the estimator asks
  for early stopping, and is passed in explicitly;
* the target of a reconstruction is the input itself, so no ``y`` is copied;
* a NaN/inf loss stops training with :class:`TrainingDivergedError`.
"""

import math
import sys

import numpy as np
import scipy.sparse as sp
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, EpochTimer, PassthroughScoring
from skorch.callbacks import PrintLog
from skorch.helper import predefined_split

from .exceptions import TrainingDivergedError
from .utils import as_tensor

__all__ = [
    "OPTIMIZERS",
    "EpochProgressBar",
    "NonFiniteLossGuard",
    "ReconstructionNet",
    "RowBatchLoader",
    "RowDataset",
    "make_net",
]

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


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
    (``utils.seeded``), so runs are repeatable.
    """

    def __init__(self, dataset, batch_size, shuffle=False):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        n_samples = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n_samples)
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.batch(order[start:start + self.batch_size])
                yield batch, batch
        elif sp.issparse(self.dataset.data):
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.batch(np.arange(start, min(start + self.batch_size,
                                                                n_samples)))
                yield batch, batch
        else:
            # Contiguous slices of the tensor: no copy at all.
            for start in range(0, n_samples, self.batch_size):
                batch = self.dataset.data[start:start + self.batch_size]
                yield batch, batch


class NonFiniteLossGuard(Callback):
    """Stop training with a clear error as soon as a batch loss is NaN or inf."""

    def __init__(self, learning_rate=None):
        self.learning_rate = learning_rate

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        loss = net.history[-1, "batches", -1, "train_loss" if training else
                           "valid_loss"]
        if not math.isfinite(loss):
            epoch = len(net.history)
            raise TrainingDivergedError(
                f"The training loss became {loss} in epoch {epoch}; training was "
                f"stopped. Lower learning_rate (it is {self.learning_rate}), or "
                "scale the input to a moderate range (e.g. StandardScaler or "
                "MinMaxScaler)."
            )


class EpochProgressBar(Callback):
    """A tqdm progress bar over epochs (``verbose=1``)."""

    def __init__(self, total=None, description="fit"):
        self.total = total
        self.description = description

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self.bar_ = tqdm(total=self.total, desc=self.description, unit="epoch",
                         file=sys.stderr, leave=False)

    def on_epoch_end(self, net, **kwargs):
        postfix = {"train_loss": f"{net.history[-1, 'train_loss']:.4g}"}
        if "valid_loss" in net.history[-1]:
            postfix["valid_loss"] = f"{net.history[-1, 'valid_loss']:.4g}"
        self.bar_.set_postfix(postfix, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


class ReconstructionNet(NeuralNet):
    """A skorch net that trains a module to reconstruct its input.

    ``get_loss`` asks the module for its loss when it defines
    ``loss(output, X)`` (the VAE's ELBO, for example); otherwise it applies the
    criterion to the module's output and the input.
    """

    @property
    def _default_callbacks(self):
        # No PrintLog here: verbosity is chosen by the estimator (make_net).
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
        ]

    def get_loss(self, y_pred, y_true, X=None, training=False):
        module_loss = getattr(self.module_, "loss", None)
        if module_loss is not None:
            return module_loss(y_pred, y_true)
        return self.criterion_(y_pred, y_true)


def _noop(*args, **kwargs):
    """A sink that prints nothing."""


def make_net(
    module,
    *,
    criterion,
    max_iter,
    batch_size,
    learning_rate,
    optimizer,
    weight_decay,
    device,
    early_stopping,
    valid_dataset,
    n_iter_no_change,
    tol,
    verbose,
    callbacks,
):
    """Build the :class:`ReconstructionNet` an estimator trains.

    Parameters mirror the estimators' (see ``AutoencoderTransformer``).
    ``valid_dataset`` is the held-out :class:`RowDataset` when
    ``early_stopping`` is on, else None. ``tol``/``n_iter_no_change`` stop
    training when the monitored loss (validation loss with early stopping, else
    training loss) has not improved by a relative ``tol`` for
    ``n_iter_no_change`` epochs; ``tol=None`` never stops early on the training
    loss.
    """
    optimizer_class = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    all_callbacks = [("nonfinite_loss_guard", NonFiniteLossGuard(learning_rate))]
    if early_stopping:
        all_callbacks.append(("early_stopping", EarlyStopping(
            monitor="valid_loss", patience=n_iter_no_change,
            threshold=tol or 0.0, threshold_mode="rel", load_best=True, sink=_noop,
        )))
    elif tol is not None:
        all_callbacks.append(("train_loss_plateau", EarlyStopping(
            monitor="train_loss", patience=n_iter_no_change,
            threshold=tol, threshold_mode="rel", load_best=False, sink=_noop,
        )))
    if verbose == 1:
        all_callbacks.append(("progress_bar", EpochProgressBar(total=max_iter)))
    elif verbose >= 2:
        all_callbacks.append(("print_log", PrintLog(sink=print)))
    all_callbacks.extend(callbacks or [])

    return ReconstructionNet(
        module,
        criterion=criterion,
        optimizer=optimizer_class,
        lr=learning_rate,
        optimizer__weight_decay=weight_decay,
        max_epochs=max_iter,
        batch_size=batch_size,
        iterator_train=RowBatchLoader,
        iterator_train__shuffle=True,
        iterator_valid=RowBatchLoader,
        train_split=predefined_split(valid_dataset) if early_stopping else None,
        callbacks=all_callbacks,
        device=device,
        verbose=verbose,
        # Pickled estimators hold whole modules; trust comes from the pickle itself.
        torch_load_kwargs={"weights_only": False},
    )
