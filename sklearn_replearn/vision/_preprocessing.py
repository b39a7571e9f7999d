"""Preprocessing: images resized, cropped and normalised as the backbone expects.

:func:`preprocessing_config` settles the resize, crop and normalisation from
the weights' preset and the estimator's parameters (a plain dict, the fitted
``preprocessing_``); :class:`Preprocessing` applies it to tensors, in batches,
so an image gives the same input whichever container it came in.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing", "preprocessing_config"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocessing_config(preset, image_size, normalize, in_channels):
    """Resolve resize/crop/normalisation from the weights and the parameters.

    Parameters
    ----------
    preset : dict or None
        The weights' preprocessing (the backbone source's
        ``preprocessing``); None: ImageNet's (shorter side 256, centre crop
        224, ImageNet mean and std).
    image_size, normalize
        The estimator's parameters.
    in_channels : int or None
        Channels the backbone's first convolution takes.

    Returns
    -------
    dict
        The keyword arguments of :class:`Preprocessing`.
    """
    preset = preset or {
        "resize_size": 256, "crop_size": 224, "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD, "interpolation": InterpolationMode.BILINEAR,
        "antialias": True,
    }
    if image_size is None:
        # (timm and Hugging Face presets may give (h, w) sizes, or no crop.)
        resize, crop = preset["resize_size"], preset["crop_size"]
        if isinstance(crop, Integral):
            crop = (int(crop),) * 2
        elif crop is not None:
            crop = tuple(int(s) for s in crop)
    elif isinstance(image_size, Integral):
        resize, crop = int(image_size), (int(image_size),) * 2
    else:
        size = tuple(np.asarray(image_size).tolist())
        if len(size) != 2 or not all(isinstance(s, Integral) and s > 0 for s in size):
            raise ValueError(
                "image_size must be an int (shorter side, then a square centre crop) "
                f"or (height, width) of positive ints; got {image_size!r}."
            )
        if size == (1, 1):
            # torchvision cannot resize 8-bit colour images to 1 x 1 (an
            # internal assertion of torch fails), and one pixel has no shape.
            raise ValueError(
                f"image_size={image_size!r} makes 1 x 1 pixel images; the images "
                "need at least 2 pixels: pass an int of at least 2, or (height, "
                "width) with more than one pixel."
            )
        resize, crop = size, None
    if normalize is True:
        mean, std = preset["mean"], preset["std"]
        if in_channels == 1 and len(mean) == 3:
            # A one-channel backbone (a user's MNIST-style module) with the
            # colour statistics: their grey equivalent, as timm does when it
            # adapts colour weights to one channel.
            mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    elif normalize is False:
        mean = std = None
    else:
        mean, std = _mean_std(normalize)
    if mean is not None and in_channels is not None and len(mean) != in_channels:
        given = ("the weights' normalisation" if normalize is True
                 else "normalize=(mean, std)")
        raise ValueError(
            f"The backbone's first convolution takes {in_channels} channels, but "
            f"{given} has {len(mean)} values per statistic; pass "
            f"normalize=(mean, std) with {in_channels} values each (e.g. "
            f"({(0.5,) * in_channels}, {(0.25,) * in_channels})), or "
            "normalize=False for inputs already scaled as the backbone expects."
        )
    return {
        "resize_size": resize, "crop_size": crop, "mean": mean, "std": std,
        "interpolation": preset["interpolation"], "antialias": preset["antialias"],
        "in_channels": in_channels,
    }


def _mean_std(normalize):
    """``normalize=(mean, std)`` as two tuples of floats, or a clear error."""
    message = (
        "normalize must be True, False or (mean, std): two sequences with one "
        "value per channel and positive finite stds, e.g. "
        f"((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)); got {normalize!r}."
    )
    try:
        mean, std = normalize
        mean = tuple(float(v) for v in mean)
        std = tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if (not mean or len(mean) != len(std) or not all(np.isfinite(mean + std))
            or any(s <= 0 for s in std)):
        raise ValueError(message)
    return mean, std


@dataclass
class Preprocessing:
    """Resize, crop and normalise images into the backbone's input batches.

    Parameters
    ----------
    resize_size : int or tuple of int
        An int resizes the shorter side to it (keeping the aspect ratio); a
        ``(height, width)`` tuple resizes to exactly that size.
    crop_size : tuple of int or None
        Centre crop ``(height, width)`` after resizing, or None.
    mean, std : tuple of float or None
        Per-channel normalisation of the [0, 1] intensities, or None.
    interpolation : InterpolationMode
    antialias : bool
    in_channels : int or None
        Channels the backbone's first convolution takes (None: unknown, passed
        through). Grayscale is replicated to 3 channels, alpha is dropped.

    Examples
    --------
    >>> import torch
    >>> preprocess = Preprocessing(resize_size=8, crop_size=(8, 8), mean=None,
    ...                            std=None)
    >>> image = torch.zeros((1, 20, 30), dtype=torch.uint8)  # grayscale (C, H, W)
    >>> batch = preprocess.finish(preprocess.prepare(image, "X[0]")[None])
    >>> tuple(batch.shape), batch.dtype
    ((1, 3, 8, 8), torch.float32)
    """

    resize_size: object
    crop_size: object
    mean: object
    std: object
    interpolation: InterpolationMode = InterpolationMode.BILINEAR
    antialias: bool = True
    in_channels: int | None = 3

    @property
    def output_size(self):
        if self.crop_size is not None:
            return tuple(self.crop_size)
        if isinstance(self.resize_size, Sequence):
            return tuple(self.resize_size)
        return None

    def check_channels(self, n_channels, what):
        """Raise a clear error when images with ``n_channels`` cannot be used."""
        wanted = self.in_channels
        if wanted is None or n_channels == wanted:
            return
        usable = (wanted == 3 and n_channels in (1, 2, 4)) or (
            wanted == 1 and n_channels == 2)
        if not usable:
            accepted = ("3 (RGB), 4 (RGBA: alpha dropped) or 1 (grayscale: replicated)"
                        if wanted == 3 else f"{wanted}")
            raise ValueError(
                f"{what} has {n_channels} channel(s), but the backbone's first "
                f"convolution takes {wanted}; pass images with {accepted} channels."
            )

    def prepare(self, images, what):
        """Channel fix, resize and crop; keeps the dtype (uint8 or float32).

        ``images`` is one (C, H, W) tensor or a (B, C, H, W) batch.
        """
        n_channels = images.shape[-3]
        self.check_channels(n_channels, what)
        if n_channels in (2, 4) and self.in_channels != n_channels:
            images = images[..., :n_channels - 1, :, :]
        if images.dtype == torch.float64:
            images = images.to(torch.float32)
        images = TF.resize(images, self._resize_arg(images.shape[-2:]),
                           interpolation=self.interpolation, antialias=self.antialias)
        if self.crop_size is not None:
            images = TF.center_crop(images, list(self.crop_size))
        return images

    def _resize_arg(self, size):
        if isinstance(self.resize_size, Sequence):
            return list(self.resize_size)
        # Shorter side to resize_size, as torchvision's Resize(int) does.
        return [int(self.resize_size)]

    def finish(self, batch):
        """uint8/float (B, C, H, W) of the output size -> normalised float32."""
        if batch.dtype == torch.uint8:
            batch = batch.to(torch.float32).div_(255.0)
        else:
            batch = batch.to(torch.float32, copy=True)
        if self.in_channels == 3 and batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=batch.dtype,
                                device=batch.device).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=batch.dtype,
                               device=batch.device).view(-1, 1, 1)
            batch = (batch - mean) / std
        return batch.contiguous(memory_format=torch.channels_last)

    def example_batch(self, device, *, random):
        """A batch of one input-sized image: blank (to probe the output width)
        or random from a fixed seed (to check a folded network on)."""
        shape = (1, self.in_channels or 3, *self.output_size)
        image = (torch.randn(shape, generator=torch.Generator().manual_seed(0))
                 if random else torch.zeros(shape))
        return image.to(device).contiguous(memory_format=torch.channels_last)
