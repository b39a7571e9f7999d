"""Training the neural estimators through Hugging Face Accelerate.

The neural estimators take ``accelerator=`` (an ``accelerate.Accelerator``):
multi-GPU data parallelism, mixed precision (``"fp16"``/``"bf16"``) and
gradient accumulation then come from skorch's own integration,
:class:`skorch.hf.AccelerateMixin`, mixed into the engine's
:class:`~sklearn_replearn._engine._net.ReconstructionNet`. Nothing here is our own
distributed code: this module only adapts the engine's net to the mixin.

``accelerate`` is optional (the ``scale`` extra) and is imported only when an
accelerator is actually used.

What the adaptation does, compared with mixing ``AccelerateMixin`` in bare:

* device placement is the accelerator's: the training data, the module and the
  inference batches all live on ``accelerator.device``; the estimator's
  ``device`` must be ``"auto"`` or name that same device;
* the training batches are shared out over the accelerator's processes
  (each process steps on its own batches, the same number of steps each), as
  accelerate's prepared data loaders do; our batch loader is not a torch
  ``DataLoader``, so accelerate would otherwise leave it whole on every process;
* a module that defines its own ``loss`` (the VAE's ELBO) is asked for it
  through the accelerator's unwrapped model, since a distributed wrapper hides
  the module's attributes;
* ``partial_fit`` re-prepares the module that the previous call unwrapped (so
  it stays picklable between calls), so each call trains wrapped again.
"""

import math

import torch
from skorch.hf import AccelerateMixin

from .._utils import import_optional
from ._net import ReconstructionNet, module_loss

__all__ = [
    "AcceleratedReconstructionNet",
    "accelerator_device",
    "check_accelerator",
]


def _accelerator_class():
    """``accelerate.Accelerator``, or a clear ImportError."""
    return import_optional("accelerate", feature="accelerator=",
                           extra="scale").Accelerator


def check_accelerator(accelerator):
    """Return ``accelerator`` if it is an ``accelerate.Accelerator``, else raise.

    Raises
    ------
    TypeError
        If ``accelerator`` is not an ``accelerate.Accelerator`` instance.
    """
    try:
        accelerator_class = _accelerator_class()
    except ImportError:
        accelerator_class = None
    if accelerator_class is None or not isinstance(accelerator, accelerator_class):
        raise TypeError(
            "accelerator must be an accelerate.Accelerator instance (e.g. "
            "Accelerator(mixed_precision='bf16')) or None; got "
            f"{type(accelerator).__name__} {accelerator!r}."
        )
    return accelerator


def accelerator_device(accelerator, device="auto"):
    """The device an accelerated estimator trains and infers on.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        The estimator's ``accelerator`` parameter.
    device : str or torch.device, default="auto"
        The estimator's ``device`` parameter: ``"auto"`` (leave it to the
        accelerator) or the accelerator's own device.

    Returns
    -------
    torch.device
        ``accelerator.device``.

    Raises
    ------
    TypeError
        If ``accelerator`` is not an ``accelerate.Accelerator``.
    ValueError
        If ``device`` names a device other than the accelerator's.

    Examples
    --------
    >>> from sklearn_replearn._engine._accelerate import accelerator_device
    >>> accelerator_device("cuda")
    Traceback (most recent call last):
    ...
    TypeError: accelerator must be an accelerate.Accelerator instance ...

    With ``accelerate`` installed, ``accelerator_device(Accelerator(cpu=True))``
    is ``device(type='cpu')``.
    """
    check_accelerator(accelerator)
    placed = torch.device(accelerator.device)
    if isinstance(device, str) and device == "auto":
        return placed
    try:
        asked = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name; with an accelerator leave "
            "device='auto' (the accelerator places the model)."
        ) from exc
    same_index = asked.index is None or asked.index == (placed.index or 0)
    if asked.type != placed.type or not same_index:
        raise ValueError(
            f"device={device!r} conflicts with the accelerator, which places the "
            f"model on {placed}; leave device='auto' when passing accelerator= "
            "(choose the device through the Accelerator, e.g. Accelerator(cpu=True) "
            "or CUDA_VISIBLE_DEVICES)."
        )
    return placed


class AcceleratedReconstructionNet(AccelerateMixin, ReconstructionNet):
    """ReconstructionNet trained through an ``accelerate.Accelerator``.

    skorch's :class:`skorch.hf.AccelerateMixin` over the engine's
    ``ReconstructionNet``; built by :func:`~sklearn_replearn._engine.build_net` when an
    accelerator is given. The
    accelerator places and wraps the module; ``device`` records where that is
    (``accelerator.device``), so that inference batches go to the same place and
    a net trained on a GPU unpickles onto the CPU of a machine without one.
    """

    def _validate_params(self):
        # AccelerateMixin insists on device=None when the accelerator places the
        # module. Here device is the accelerator's own device (skorch's moves
        # are then no-ops), which inference and unpickling need.
        ReconstructionNet._validate_params(self)
        accelerator_device(self.accelerator, self.device)

    def get_iterator(self, dataset, training=False):
        iterator = super().get_iterator(dataset, training=training)
        if training and self.accelerator.num_processes > 1:
            return _ProcessShard(iterator, self.accelerator.process_index,
                                 self.accelerator.num_processes)
        return iterator

    def get_loss(self, y_pred, y_true, X=None, training=False):
        module = self.accelerator.unwrap_model(self.module_, keep_fp32_wrapper=True)
        return module_loss(module, self.criterion_, y_pred, y_true)

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        if not self._wrapped_with_accelerator:
            # partial_fit after a call that unwrapped the module at its end:
            # wrap the module and criterion again (the optimizer stays prepared).
            for name in self._modules + self._criteria:
                module = getattr(self, name + "_")
                if isinstance(module, torch.nn.Module):
                    setattr(self, name + "_", self.accelerator.prepare(module))
            self._wrapped_with_accelerator = True


class _ProcessShard:
    """The training batches of one of ``num_processes`` processes.

    Process ``index`` takes batches ``index, index + num_processes, ...``; a
    process left with fewer than ``ceil(n_batches / num_processes)`` repeats its
    first batch, so that all processes take the same number of optimizer steps
    (distributed training waits for every process at each step). Every process
    shuffles with the same seed, so the shards are disjoint.
    """

    def __init__(self, loader, index, num_processes):
        self.loader = loader
        self.index = index
        self.num_processes = num_processes

    def __len__(self):
        return math.ceil(len(self.loader) / self.num_processes)

    def __iter__(self):
        n_batches = len(self.loader)
        first = None
        n_yielded = 0
        for position, batch in enumerate(self.loader):
            if position == self.index % n_batches and first is None:
                first = batch
            if position % self.num_processes == self.index:
                n_yielded += 1
                yield batch
        for _ in range(len(self) - n_yielded):
            yield first
