"""Batches: an image set through a module in fixed-size batches.

Images are loaded, resized and cropped batch by batch (in the main process,
on the GPU for in-memory arrays, or in ``DataLoader`` workers for files and
PIL images), normalised, padded to exactly ``batch_size`` images (unless
the caller opts out) and run through the module; the outputs are written into
one preallocated array. Every batch has the same shape, so an image's output
never depends on the other images it is run with (CPU kernels round
differently for different batch shapes).
"""

import sys

import numpy as np
import torch

from .._utils import iter_row_batches, to_numpy
from .._utils._precision import inference_autocast
from ._inputs import ArrayImages
from ._jpeg import decoded_batches, use_device_decoding

__all__ = ["run_batches"]

# Largest batch (as float32 bytes, before resizing) resized on the GPU.
_GPU_RESIZE_MAX_BYTES = 1 << 30


def run_batches(images, module, postprocess, preprocess, *, batch_size, num_workers,
                device, autocast, out_dtype, verbose=0, description="transform",
                pad=True):
    """Run ``postprocess(module(batch))`` over all images, ``batch_size`` at a time.

    Parameters
    ----------
    images : ImageSet
        The images (``read_images``).
    module : torch.nn.Module
        Runs on ``device``, under ``torch.inference_mode``.
    postprocess : callable
        Maps the module's output to the rows to keep (pooling).
    preprocess : Preprocessing
        Resize, crop and normalisation.
    batch_size, num_workers : int
        Images per batch; ``DataLoader`` workers for images loaded one by one.
    device : torch.device
    autocast : bool
        Run under ``torch.autocast``: float16 on CUDA, bfloat16 on a CPU
        with native bfloat16 (``_utils._precision.autocast_dtype``).
    out_dtype : numpy dtype
        dtype of the returned array.
    verbose : int, default=0
        A progress bar over images when > 0.
    description : str, default="transform"
        The progress bar's label.
    pad : bool, default=True
        Pad the last, short batch to ``batch_size`` images (one batch shape:
        batch-invariant outputs, one compiled graph); False runs it as it is.

    Returns
    -------
    ndarray of shape (n_images, ...)
    """
    n_images = len(images)
    outputs = None
    autocast = inference_autocast(device, autocast)
    progress = None
    if verbose:
        from tqdm.auto import tqdm

        progress = tqdm(total=n_images, desc=description, unit="img",
                        file=sys.stderr, leave=False)
    try:
        with torch.inference_mode(), autocast:
            for rows, batch in _prepared_batches(images, preprocess, batch_size,
                                                 num_workers, device):
                n_rows = batch.shape[0]
                batch = preprocess.finish(batch)
                if pad and n_rows < batch_size:
                    padding = batch.new_zeros((batch_size - n_rows, *batch.shape[1:]))
                    batch = torch.cat([batch, padding]).contiguous(
                        memory_format=torch.channels_last)
                batch = batch.to(device, non_blocking=True)
                result = postprocess(_as_float32(module(batch)))[:n_rows]
                if outputs is None:
                    outputs = np.empty((n_images, *result.shape[1:]), dtype=out_dtype)
                outputs[rows] = to_numpy(result.float())
                if progress is not None:
                    progress.update(n_rows)
    finally:
        if progress is not None:
            progress.close()
    return outputs


def _as_float32(output):
    """A reduced-precision output in float32, so pooling sums in float32."""
    if isinstance(output, torch.Tensor) and output.dtype in (torch.float16,
                                                             torch.bfloat16):
        return output.float()
    return output


def _prepared_batches(images, preprocess, batch_size, num_workers, device):
    """Yield ``(rows, batch)``: resized images of one batch, uint8 or float."""
    if isinstance(images, ArrayImages):
        # In-memory images are resized where the network runs: on a GPU the
        # CPU's resize and crop would bound the throughput (and uint8 images
        # copy 4x fewer bytes than the float batch).
        for rows in iter_row_batches(len(images), batch_size):
            batch = images.load_batch(rows)
            # (Unless the batch is huge: resizing converts it to float32, and
            # a batch of large photos would then fill the GPU's memory.)
            if device.type == "cuda" and batch.numel() * 4 <= _GPU_RESIZE_MAX_BYTES:
                batch = batch.to(device)
            yield rows, preprocess.prepare(batch, "X")
        return
    if use_device_decoding(images, device):
        # JPEG files decoded on the GPU, in the main process (_jpeg).
        yield from decoded_batches(images, preprocess, batch_size, device,
                                   _stack_prepared)
        return
    if num_workers == 0:
        for rows in iter_row_batches(len(images), batch_size):
            prepared = [preprocess.prepare(images.load(index), f"X[{index}]")
                        for index in range(rows.start, rows.stop)]
            yield rows, _stack_prepared(prepared)
        return
    loader = torch.utils.data.DataLoader(
        _PreparedImages(images, preprocess), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=_collate_prepared,
    )
    start = 0
    for batch in loader:
        if isinstance(batch, _LoadFailure):
            raise ValueError(batch.message)
        rows = slice(start, start + batch.shape[0])
        start = rows.stop
        yield rows, batch


class _LoadFailure:
    """An image that could not be read (returned by DataLoader workers)."""

    def __init__(self, message):
        self.message = message


class _PreparedImages(torch.utils.data.Dataset):
    """Loads and resizes one image per item (in DataLoader workers)."""

    def __init__(self, images, preprocess):
        self.images = images
        self.preprocess = preprocess

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        try:
            return self.preprocess.prepare(self.images.load(index), f"X[{index}]")
        except ValueError as exc:
            # Re-raised in the main process without the worker's traceback.
            return _LoadFailure(str(exc))


def _collate_prepared(items):
    for item in items:
        if isinstance(item, _LoadFailure):
            return item
    return _stack_prepared(items)


def _stack_prepared(prepared):
    """Stack prepared images (uint8 and/or float32) into one batch tensor."""
    channels = max(image.shape[0] for image in prepared)
    if channels == 3:
        # Grayscale images among RGB ones (Preprocessing.finish replicates
        # the channel of all-gray batches the same way).
        prepared = [image.expand(3, -1, -1) if image.shape[0] == 1 else image
                    for image in prepared]
    if all(image.dtype == torch.uint8 for image in prepared):
        return torch.stack(prepared)
    return torch.stack([
        image.to(torch.float32).div_(255.0) if image.dtype == torch.uint8 else image
        for image in prepared
    ])
