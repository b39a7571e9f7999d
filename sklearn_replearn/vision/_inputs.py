"""Image inputs of ``PretrainedCNNFeatures``: what the user passed, as images.

Every accepted input (numeric arrays in NHWC/NCHW/NHW or flat rows, PIL images,
file paths, lists of per-image arrays of any size, pandas Series of those)
becomes an :class:`ImageSet` that yields one ``(C, H, W)`` tensor per image
(uint8, or float32 in [0, 1]); :func:`read_images` is the one entry point.
Each image is read the same way whichever container it came in, so an array,
a PIL image and a PNG file of the same pixels give the same tensor.
"""

import os
import sys

import numpy as np
import scipy.sparse as sp
import torch

from .._image_files import IMAGE_EXTENSIONS
from .._utils import check_image_shape

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayImages",
    "ImageSet",
    "ItemImages",
    "read_images",
]

_CHANNEL_COUNTS = (1, 2, 3, 4)


def _pil_image_class():
    # Pillow is a dependency of torchvision, hence of this package: not an
    # optional import (import_optional would have no extra to name).
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with torchvision
        return None
    return Image.Image


def check_pixels(height, width, what, *, several=False):
    """Raise a ValueError naming ``what`` when an image has no pixels.

    torchvision's resize divides by the sides (a ZeroDivisionError); and an
    image without pixels has no features to give.
    """
    if height > 0 and width > 0:
        return
    subject = f"{what} holds images of" if several else f"{what} has"
    raise ValueError(
        f"{subject} {height} x {width} pixels (height x width); an image needs "
        f"at least one pixel on each side. Remove {'them' if several else 'it'} "
        "from X."
    )


def _is_path(item):
    return isinstance(item, str | os.PathLike)


def is_image_list(items):
    """Whether a list holds images (paths, PIL images, per-image arrays).

    One image-like item is enough: the list is then read as images, and any
    other item is reported by :class:`ItemImages` by its index.
    """
    pil_class = _pil_image_class()
    for item in items:
        if _is_path(item) or (pil_class is not None and isinstance(item, pil_class)):
            return True
        if isinstance(item, np.ndarray | torch.Tensor) and item.ndim in (2, 3):
            return True
    return False


def pixel_array(array, what, *, check_range):
    """Return a numeric array as uint8 or float32 pixels, or raise a clear error.

    uint8 is kept; other integers must hold 0-255; booleans become 0.0/1.0;
    floats are intensities in [0, 1] (checked when ``check_range``, i.e. when
    the images are normalised with a mean and std in those units).
    """
    if sp.issparse(array):
        raise TypeError(
            f"{what} is a scipy sparse matrix; images must be dense: pass "
            "X.toarray(), or file paths for large image sets."
        )
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind == "b":
        return array.astype(np.float32)
    if kind == "u" and array.dtype.itemsize == 1:
        return array
    if kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"{what} holds integers in [{array.min()}, {array.max()}]; integer "
                "images must be 8-bit intensities in [0, 255]. Convert to uint8, or "
                "to floats in [0, 1] (e.g. X / X.max())."
            )
        return array.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(array).all():
            n_bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise ValueError(
                f"{what} contains {n_bad} NaN or inf value(s); images must be "
                "finite. Replace them (e.g. np.nan_to_num) before transforming."
            )
        if check_range and array.size and (array.min() < 0 or array.max() > 1):
            low, high = array.min(), array.max()
            # Every digit of the dtype: 1 + 1e-7 must not print as 1.
            outside = [f"its minimum {_exact(low)} is below 0"] if low < 0 else []
            outside += [f"its maximum {_exact(high)} is above 1"] if high > 1 else []
            raise ValueError(
                f"{what} holds floats in [{_exact(low)}, {_exact(high)}]: "
                f"{' and '.join(outside)}, but float images must be intensities "
                "in [0, 1] (the backbone's normalisation assumes it). Divide by "
                "255 (8-bit data) or by the maximum, clip values just outside "
                "from rounding (np.clip(X, 0, 1)), pass uint8 arrays, or set "
                "normalize=False to feed the values unchanged."
            )
        return array.astype(np.float32, copy=False)
    raise TypeError(
        f"{what} has dtype {array.dtype}; images must be numeric arrays (uint8 0-255 "
        "or float 0-1), PIL images or file paths."
    )


def _exact(value):
    """A numpy float with the shortest digits that identify it in its dtype
    (numpy's own repr): 1.0000001, -1e-09, 255 (not 255.0)."""
    text = str(value)
    return text[:-2] if text.endswith(".0") else text


def _channel_axis(shape, dtype, image_shape, what, shown=None, channels=None):
    """Decide whether an (N, a, b, c) array is channels-first or channels-last.

    ``shown`` is the shape quoted in errors (one image's, for list items);
    ``channels`` (image_shape's C, for list items of any size) settles a
    shape that could be read both ways.
    """
    shown = tuple(shape) if shown is None else tuple(shown)
    first, last = shape[1] in _CHANNEL_COUNTS, shape[-1] in _CHANNEL_COUNTS
    if image_shape is not None and len(image_shape) == 3:
        channels = image_shape[0]
        if tuple(shape[1:]) == tuple(image_shape):
            return "first"
        if shape[-1] == channels and tuple(shape[1:3]) == tuple(image_shape[1:]):
            return "last"
        raise ValueError(
            f"{what} has shape {tuple(shape)}, which matches image_shape={image_shape} "
            "neither as (N, C, H, W) nor as (N, H, W, C); fix image_shape or X."
        )
    if first and not last:
        return "first"
    if last and not first:
        return "last"
    if first and last:
        # Both axes could hold channels (e.g. (N, 3, H, 4): RGB images 4 pixels
        # wide, or RGBA images 3 pixels high). Guessing silently gives wrong
        # features for one of the two readings: ask, unless the channel count
        # of image_shape settles it.
        if channels is not None and (shape[1] == channels) != (
                shape[-1] == channels):
            return "first" if shape[1] == channels else "last"
        first_shape = (shape[1], *shape[2:])
        last_shape = (shape[-1], *shape[1:-1])
        raise ValueError(
            f"{what} has shape {shown}, which is ambiguous: channels first "
            f"({shape[1]} channels) or channels last ({shape[-1]} channels). Say "
            f"which with image_shape=(C, H, W): {first_shape} for channels "
            f"first, {last_shape} for channels last."
        )
    raise ValueError(
        f"{what} has shape {shown}: no axis holds 1, 2, 3 or 4 channels. Pass "
        "(N, H, W, C) or (N, C, H, W) color images (C=3 RGB, C=4 RGBA) or (N, H, W) "
        "grayscale images."
    )


class ImageSet:
    """A sequence of images yielding ``(C, H, W)`` uint8 or float32 tensors."""

    def __len__(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index):  # pragma: no cover - abstract
        """Image ``index`` as a ``(C, H, W)`` tensor (uint8 or float32)."""
        raise NotImplementedError

    def load_batch(self, rows):
        """Images ``rows`` (a slice) as a (B, C, H, W) tensor or a list of them."""
        return [self.load(index) for index in range(*rows.indices(len(self)))]


class ArrayImages(ImageSet):
    """Equal-size images held in one array of shape (N, C, H, W) or (N, H, W, C).

    ``from_rows`` tells that the array was given as flat rows (N, C*H*W).
    """

    def __init__(self, array, channels_last, from_rows=False):
        self.array = array
        self.channels_last = channels_last
        self.from_rows = from_rows

    def __len__(self):
        return self.array.shape[0]

    @property
    def n_channels(self):
        return self.array.shape[3 if self.channels_last else 1]

    def _tensor(self, block):
        # torch.from_numpy takes neither read-only memory nor negative strides
        # (a reversed view such as images[::-1]).
        if not block.flags.writeable or min(block.strides, default=0) < 0:
            block = block.copy()
        tensor = torch.from_numpy(block)
        return tensor.permute(0, 3, 1, 2) if self.channels_last else tensor

    def load(self, index):
        return self._tensor(self.array[index:index + 1])[0]

    def load_batch(self, rows):
        return self._tensor(self.array[rows])


class ItemImages(ImageSet):
    """A list of PIL images, file paths and per-image arrays, loaded one by one.

    Items are checked when the set is built (types, that files exist, array
    shapes and values); files are only opened when an image is loaded.
    """

    def __init__(self, items, *, check_range, image_shape=None):
        self.items = list(items)
        self.check_range = check_range
        # Only image_shape's C applies to a list (its images may differ in size).
        self.channels = (int(image_shape[0]) if image_shape is not None
                         and len(image_shape) == 3 else None)
        pil_class = _pil_image_class()
        for index, item in enumerate(self.items):
            what = f"X[{index}]"
            if _is_path(item):
                path = os.fspath(item)
                if not os.path.isfile(path):
                    raise ValueError(
                        f"{what} is the path {path!r}, which is not an existing file "
                        f"(working directory {os.getcwd()!r}); check the path."
                    )
            elif pil_class is not None and isinstance(item, pil_class):
                width, height = item.size
                check_pixels(height, width, what)
            elif isinstance(item, np.ndarray | torch.Tensor):
                self.items[index] = self._array_image(item, what)
            else:
                raise TypeError(
                    f"{what} is a {type(item).__name__}; a list of images may hold "
                    "file paths, PIL images or arrays of shape (H, W), (H, W, C) or "
                    "(C, H, W)."
                )

    def __len__(self):
        return len(self.items)

    def _array_image(self, item, what):
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        item = pixel_array(item, what, check_range=self.check_range)
        if item.ndim == 2:
            check_pixels(*item.shape, what)
            return item[np.newaxis]
        if item.ndim != 3:
            raise ValueError(
                f"{what} has shape {item.shape}; one image must be (H, W), (H, W, C) "
                "or (C, H, W)."
            )
        layout = _channel_axis((1, *item.shape), item.dtype, None, what,
                               shown=item.shape, channels=self.channels)
        item = item.transpose(2, 0, 1) if layout == "last" else item
        check_pixels(*item.shape[1:], what)
        return np.ascontiguousarray(item)

    def load(self, index):
        item = self.items[index]
        what = f"X[{index}]"
        if _is_path(item):
            item = _open_image(os.fspath(item), what)
            what = f"X[{index}] ({os.fspath(self.items[index])!r})"
        if not isinstance(item, np.ndarray):
            item = _pil_to_array(item, what)
            check_pixels(*item.shape[1:], what)
        if not item.flags.writeable:
            item = item.copy()
        return torch.from_numpy(item)


def _open_image(path, what):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError as exc:
        raise ValueError(f"{what}: the file {path!r} does not exist.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(
            f"{what}: cannot read {path!r} as an image ({exc}). Pass image files "
            f"({', '.join(IMAGE_EXTENSIONS)}) or remove it from the list."
        ) from exc


def _pil_to_array(image, what):
    """A PIL image as a (C, H, W) uint8 array: L stays gray, others become RGB."""
    mode = image.mode
    if mode == "LA":
        image = image.convert("L")
    elif mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise ValueError(
            f"{what} is a PIL image in mode {mode!r} (high bit depth); convert it to "
            "8 bits ('L' or 'RGB') or pass a float array in [0, 1]."
        )
    elif mode not in ("L", "RGB"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[np.newaxis]
    else:
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array, dtype=np.uint8)


def read_images(X, *, image_shape, check_range, validate_rows):
    """Turn any supported image input into an :class:`ImageSet`.

    Parameters
    ----------
    X : array-like, list, pandas Series or DataFrame
        The images, in any accepted container.
    image_shape : tuple of int or None
        ``(C, H, W)`` of flat rows (one entry may be -1); also settles the
        channel axis of 4-D arrays.
    check_range : bool
        Whether float pixels must lie in [0, 1].
    validate_rows : callable
        Called with X when it is a table (2-D numeric rows, a DataFrame, a
        list of rows): the estimator's ``validate_data``, which returns the
        checked array and records ``n_features_in_``.

    Returns
    -------
    images : ImageSet
        At least one image.
    out_dtype : type
        ``np.float64`` for float64 arrays, else ``np.float32``.
    """
    X = _unwrap_items(X)
    # Before validate_rows, whose messages ("Expected 2D array", "Reshape
    # your data") would speak of tables, not images.
    if _is_empty(X):
        raise ValueError("X contains no images (0 samples); pass at least one.")
    if isinstance(X, np.ndarray) and X.ndim == 0 and X.dtype.kind in "OUS":
        X = X.item()  # np.array("a.png")
    if isinstance(X, str | bytes | os.PathLike):
        raise ValueError(
            f"X is one path ({os.fsdecode(X)!r}); X holds several images: pass a "
            "list of paths, [X] for this one image."
        )
    if isinstance(X, list | tuple):
        _check_list_items(X)
        if not is_image_list(X):
            X = _nested_lists_as_array(X)
    if isinstance(X, list | tuple) and is_image_list(X):
        images = ItemImages(X, check_range=check_range, image_shape=image_shape)
        dtype = None
    else:
        if not (isinstance(X, np.ndarray | torch.Tensor) and X.ndim > 2):
            if sp.issparse(X):
                raise TypeError(
                    "X is a scipy sparse matrix, but PretrainedCNNFeatures needs "
                    "dense images: pass X.toarray() (rows with image_shape), or "
                    "file paths."
                )
            X = validate_rows(X)
        dtype = getattr(X, "dtype", None)
        images = as_image_set(X, image_shape=image_shape, check_range=check_range)
    if len(images) == 0:
        raise ValueError("X contains no images (0 samples); pass at least one.")
    return images, np.float64 if dtype == np.float64 else np.float32


def _check_list_items(X):
    """Refuse list items that are no image whatever the rest: bytes, batches."""
    for index, item in enumerate(X):
        if isinstance(item, bytes):
            raise TypeError(
                f"X[{index}] is bytes ({item[:60]!r}); pass file paths as str "
                "(os.fsdecode(path)), or encoded image data opened with PIL "
                "(PIL.Image.open(io.BytesIO(data)))."
            )
        if isinstance(item, np.ndarray | torch.Tensor) and item.ndim >= 4:
            raise ValueError(
                f"X[{index}] is an array of shape {tuple(item.shape)}: a batch of "
                "images, but a list holds one image per item. Pass the array "
                "itself, not in a list (np.concatenate(X) joins batches of "
                "images of one size)."
            )


def _nested_lists_as_array(X):
    """Nested lists of numbers deeper than a table (one image as (H, W, C)
    lists, or a batch) as an array, which is then read as an image array;
    other lists are returned unchanged (tables of flat rows)."""
    if not any(isinstance(item, list | tuple) for item in X):
        return X
    try:
        array = np.asarray(X)
    except (ValueError, TypeError):  # ragged: left to validate_rows
        return X
    return array if array.ndim > 2 and array.dtype.kind in "biuf" else X


def _is_empty(X):
    """Whether X is an empty list, tuple or array (no images at all)."""
    if isinstance(X, list | tuple):
        return len(X) == 0
    shape = getattr(X, "shape", None)
    return shape is not None and len(shape) > 0 and shape[0] == 0


def _unwrap_items(X):
    """Lists of images from pandas objects and string arrays; others unchanged."""
    pd = sys.modules.get("pandas")  # pandas is optional: no DataFrame without it
    if pd is not None:
        if isinstance(X, pd.DataFrame) and X.shape[1] == 1 and not (
                pd.api.types.is_numeric_dtype(X.dtypes.iloc[0])):
            X = X.iloc[:, 0]
        if isinstance(X, pd.Series):
            return X.tolist()
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS" and (
            X.ndim == 1 or (X.ndim == 2 and X.shape[1] == 1)):
        return X.ravel().tolist()
    return X


def as_image_set(X, *, image_shape, check_range):
    """An :class:`ImageSet` of an array (after ``read_images``'s checks).

    Parameters
    ----------
    X : ndarray or torch.Tensor
        Already validated when 2-D numeric (flat rows).
    image_shape : tuple of int or None
        ``(C, H, W)``; one entry may be -1. Required for flat rows.
    check_range : bool
        Whether float pixels must lie in [0, 1].
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if not isinstance(X, np.ndarray):
        raise TypeError(f"X is a {type(X).__name__}, not an image container.")
    if X.dtype.kind in "OUS":
        if X.ndim != 1:
            raise TypeError(
                f"X is a {X.ndim}-D array of dtype {X.dtype}; strings are only "
                "accepted as a 1-D list of image file paths."
            )
        return ItemImages(X.tolist(), check_range=check_range,
                          image_shape=image_shape)
    what = "X"
    if X.ndim == 2:
        return _flat_rows(X, image_shape, check_range)
    if X.ndim == 3:
        # A last axis of 1-4 next to a wider one looks like one image's
        # channels (Keras and OpenCV give a grey image as (H, W, 1)); read as
        # (N, H, W) it would silently become H images of W x 1 pixels.
        if X.shape[-1] in (1, 2, 3, 4) and X.shape[1] > X.shape[-1]:
            raise ValueError(
                f"X has shape {X.shape}: a 3-D array is read as N grayscale images "
                f"(N, H, W), but its last axis of {X.shape[-1]} looks like "
                "channels. For one image pass [X] (a list of one image) or "
                "X[np.newaxis] (shape (1, H, W, C)); for grayscale images of width "
                f"{X.shape[-1]} pass X[:, np.newaxis] (shape (N, 1, H, W))."
            )
        check_pixels(*X.shape[1:], what, several=True)
        X = pixel_array(X, what, check_range=check_range)
        return ArrayImages(X[:, np.newaxis], channels_last=False)
    if X.ndim == 4:
        layout = _channel_axis(X.shape, X.dtype, image_shape, what)
        check_pixels(*(X.shape[1:3] if layout == "last" else X.shape[2:]), what,
                     several=True)
        X = pixel_array(X, what, check_range=check_range)
        return ArrayImages(X, channels_last=layout == "last")
    raise ValueError(
        f"X has shape {X.shape} ({X.ndim}-D); pass images as (N, H, W, C), "
        "(N, C, H, W) or (N, H, W) arrays, flat rows (N, C*H*W) with image_shape, "
        "or a list of PIL images, file paths or per-image arrays."
    )


def _flat_rows(X, image_shape, check_range):
    try:
        shape = check_image_shape(image_shape, X.shape[1], what="X")
    except ValueError as exc:
        raise ValueError(
            f"{exc} Or pass the images unflattened, (N, H, W, C), instead of "
            f"{X.shape[1]} columns."
        ) from None
    X = pixel_array(X, "X", check_range=check_range)
    return ArrayImages(X.reshape(X.shape[0], *shape), channels_last=False,
                       from_rows=True)
