"""JPEG files decoded where the network runs: on the GPU, in batches.

On a GPU, feature extraction from JPEG files is bound by decoding them on the
CPU, many times slower than extraction from arrays (the benchmarks page
gives the figures). When ``device`` is CUDA, the JPEG files of each batch are read as
bytes and decoded together by ``torchvision.io.decode_jpeg(..., device=
"cuda")`` (nvJPEG), then resized and cropped on the GPU. Other formats, JPEGs
the GPU decoder rejects (CMYK, progressive files it cannot read, corrupt
data) and PIL images or arrays in the same list take the CPU path image by
image, so a batch gives the same images either way, up to the decoders'
rounding (nvJPEG's and libjpeg-turbo's IDCT and upsampling differ by a few
intensity levels on some pixels).
"""

import os
import warnings
from contextlib import contextmanager

__all__ = ["JPEG_SUFFIXES", "decoded_batches", "load_decoded", "use_device_decoding"]

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


@contextmanager
def _quiet_deprecation():
    # torchvision 0.29 deprecates its image decoders in favour of TorchCodec
    # (a separate install); they still work, and users cannot act on it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module="torchvision")
        yield


def _jpeg_path(item):
    if isinstance(item, str | os.PathLike):
        path = os.fspath(item)
        if path.lower().endswith(JPEG_SUFFIXES):
            return path
    return None


def use_device_decoding(images, device):
    """Whether ``images`` (an ImageSet) holds JPEG files to decode on ``device``."""
    items = getattr(images, "items", None)
    return (device.type == "cuda" and items is not None
            and any(_jpeg_path(item) is not None for item in items))


def load_decoded(images, indices, device):
    """Images ``indices`` of ``images`` as ``(C, H, W)`` uint8 tensors on ``device``.

    JPEG files are decoded in one ``decode_jpeg`` call on ``device``; the
    rest, and JPEGs it cannot decode, are loaded by ``images.load`` (PIL, on
    the CPU) and moved.

    Parameters
    ----------
    images : ItemImages
    indices : sequence of int
    device : torch.device
        Where to decode (CUDA in use; the CPU in tests).

    Returns
    -------
    list of torch.Tensor

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_replearn.vision._inputs import ItemImages
    >>> images = ItemImages([np.zeros((6, 5, 3), np.uint8)], check_range=True)
    >>> [tuple(t.shape) for t in load_decoded(images, [0], torch.device("cpu"))]
    [(3, 6, 5)]
    """
    import torchvision
    from torchvision.io import ImageReadMode

    loaded = [None] * len(indices)
    positions, data = [], []
    for position, index in enumerate(indices):
        path = _jpeg_path(images.items[index])
        if path is not None:
            try:
                with _quiet_deprecation():
                    data.append(torchvision.io.read_file(path))
                positions.append(position)
            except (OSError, RuntimeError):
                pass  # the CPU path reports it with the image's index
    if data:
        try:
            with _quiet_deprecation():
                decoded = torchvision.io.decode_jpeg(
                    data, mode=ImageReadMode.UNCHANGED, device=device)
        except (RuntimeError, ValueError):
            # One file nvJPEG rejects fails the whole call: decode one by one.
            decoded = [_decode_one(torchvision, one, device) for one in data]
        for position, image in zip(positions, decoded, strict=True):
            # Gray or RGB as PIL gives them; CMYK (4 channels) goes through
            # PIL, which converts it to RGB.
            if image is not None and image.shape[0] in (1, 3):
                loaded[position] = image
    for position, index in enumerate(indices):
        if loaded[position] is None:
            loaded[position] = images.load(index).to(device)
    return loaded


def _decode_one(torchvision, data, device):
    from torchvision.io import ImageReadMode

    try:
        with _quiet_deprecation():
            return torchvision.io.decode_jpeg(data, mode=ImageReadMode.UNCHANGED,
                                              device=device)
    except (RuntimeError, ValueError):
        return None


def decoded_batches(images, preprocess, batch_size, device, stack):
    """Yield ``(rows, batch)`` as ``_prepared_batches``, decoding on ``device``."""
    from .._utils import iter_row_batches

    for rows in iter_row_batches(len(images), batch_size):
        indices = range(rows.start, rows.stop)
        loaded = load_decoded(images, indices, device)
        yield rows, stack([preprocess.prepare(image, f"X[{index}]")
                           for index, image in zip(indices, loaded, strict=True)])
