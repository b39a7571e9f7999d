"""Natural-image patches, and how localised learned filters are.

:func:`load_patches` cuts whitened patches from photos that ship with
scikit-learn and scikit-image (the data of the tour's ``--data patches``);
:func:`filter_localisation` measures how much of each filter lies in a small
window, which tells learned edge-like filters from random ones.
"""

from numbers import Integral, Real

import numpy as np

from .._utils import import_optional

__all__ = ["PATCH_IMAGES", "filter_localisation", "load_patches"]

#: Names of the photos :func:`load_patches` cuts patches from: ``"china"`` and
#: ``"flower"`` ship with scikit-learn, the others with scikit-image.
PATCH_IMAGES = ("china", "flower", "astronaut", "chelsea", "coffee")


def _gray_image(name):
    """A bundled photo as a 2-D float64 array in [0, 1]."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    else:
        data = import_optional("skimage.data", feature="The patch tour",
                               extra="test", package="scikit-image")
        loader = getattr(data, name, None)
        if not callable(loader) or name.startswith("_"):
            raise ValueError(
                f"Unknown image {name!r}: use 'china', 'flower' or the name of "
                "a scikit-image photo in skimage.data (e.g. 'camera', 'brick').")
        image = loader()
    image = np.asarray(image)
    # 8-bit photos to [0, 1]; float images (lfw_subset) are there already.
    scale = 255.0 if image.dtype.kind in "ui" else 1.0
    image = image.astype(np.float64) / scale
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(
            f"Image {name!r} has shape {image.shape}: load_patches needs one "
            "photo, grayscale (height, width) or colour (height, width, 3 or "
            "4), not a stack of images.")
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114])
    return image


def load_patches(patch_size=12, n_patches=2000, *, images=PATCH_IMAGES,
                 downsample=2, whitening=1.0, random_state=0):
    """Whitened natural-image patches, for learning edge-like filters.

    From each grayscale photo, block-averaged by ``downsample``, take
    ``n_patches`` random ``patch_size x patch_size`` patches wholly in its
    left half (training) and ``n_patches // 4`` wholly in its right half
    (test), so that overlapping patches never cross the split. Then, as is
    usual for these figures (Olshausen & Field 1996):

    * remove each patch's mean: brightness carries most of the variance and
      none of the structure;
    * ZCA-whiten with the training patches' covariance ``C``:
      ``x -> x (C + eps I)^(-1/2)`` with ``eps = whitening`` times the mean
      eigenvalue of ``C``. Natural images have a power spectrum falling as
      1/f^2; whitening flattens it, so that the reconstruction error is not
      dominated by the few strongest, lowest frequencies. ``eps`` damps the
      highest frequencies, where the pixel noise is (the low-pass cut-off of
      Olshausen & Field's whitening filter);
    * scale to unit variance over all values.

    Block-averaging first removes the JPEG blocks and demosaicing patterns of
    single pixels, which whitening would otherwise amplify into
    checkerboard filters.

    Parameters
    ----------
    patch_size : int, default=12
        Side of the square patches (after downsampling).
    n_patches : int, default=2000
        Training patches per image.
    images : sequence of str, default=PATCH_IMAGES
        ``"china"`` and ``"flower"`` (``sklearn.datasets.load_sample_image``)
        or names of ``skimage.data`` images.
    downsample : int, default=2
        Block-averaging factor applied to each image first.
    whitening : float, default=1.0
        The whitening's ``eps``, relative to the mean eigenvalue.
    random_state : int, default=0
        Seeds the patch positions.

    Returns
    -------
    X_train : ndarray of shape (n_patches * len(images), patch_size ** 2)
    X_test : ndarray of shape (n_patches // 4 * len(images), patch_size ** 2)
        Whitened patches (float32), rows of C-ordered pixels.
    to_pixels : callable
        Maps whitened rows back to mean-removed pixel values (for showing
        reconstructions as images).

    Examples
    --------
    >>> from sklearn_replearn.datasets import load_patches
    >>> X_train, X_test, to_pixels = load_patches(8, 100, images=("china",))
    >>> X_train.shape, X_test.shape, to_pixels(X_test).shape
    ((100, 64), (25, 64), (25, 64))
    """
    if not (isinstance(patch_size, Integral) and patch_size >= 2):
        raise ValueError(f"patch_size must be an int >= 2; got {patch_size!r}.")
    if not (isinstance(n_patches, Integral) and n_patches >= 4):
        raise ValueError(f"n_patches must be an int >= 4; got {n_patches!r}.")
    if not (isinstance(downsample, Integral) and downsample >= 1):
        raise ValueError(f"downsample must be an int >= 1 (1 keeps the images' "
                         f"resolution); got {downsample!r}.")
    if not (isinstance(whitening, Real) and whitening > 0
            and np.isfinite(whitening)):
        raise ValueError(
            f"whitening must be a positive number (the damping of the "
            f"whitening, relative to the mean eigenvalue; 1.0 by default): "
            f"without it the zero eigenvalue left by removing each patch's "
            f"mean gives NaN patches; got {whitening!r}.")
    if isinstance(images, str) or not len(images) or not all(
            isinstance(name, str) for name in images):
        raise ValueError(
            f"images must be a non-empty sequence of image names, e.g. "
            f"('china', 'camera'); got {images!r}.")
    patch_size, n_patches, downsample = (int(value) for value in
                                         (patch_size, n_patches, downsample))
    rng = np.random.RandomState(random_state)
    train, test = [], []
    for name in images:
        image = _gray_image(name)
        height, width = (size // downsample * downsample for size in image.shape)
        image = image[:height, :width].reshape(
            height // downsample, downsample, width // downsample, downsample,
        ).mean(axis=(1, 3))
        height, half = image.shape[0], image.shape[1] // 2
        if min(height, half) < patch_size:
            raise ValueError(
                f"Image {name!r} is {image.shape[0]}x{image.shape[1]} after "
                f"downsample={downsample}: too small for {patch_size}x{patch_size} "
                "patches from each half; use smaller patches or less downsampling."
            )
        for rows, count, left in ((train, n_patches, 0),
                                  (test, n_patches // 4, half)):
            ys = rng.randint(0, height - patch_size + 1, count)
            xs = left + rng.randint(0, half - patch_size + 1, count)
            rows.extend(image[y:y + patch_size, x:x + patch_size].ravel()
                        for y, x in zip(ys, xs))
    train, test = (np.asarray(rows) for rows in (train, test))
    train -= train.mean(axis=1, keepdims=True)
    test -= test.mean(axis=1, keepdims=True)
    eigenvalues, eigenvectors = np.linalg.eigh(train.T @ train / len(train))
    eigenvalues = np.clip(eigenvalues, 0.0, None) + whitening * eigenvalues.mean()
    whiten = eigenvectors @ np.diag(eigenvalues ** -0.5) @ eigenvectors.T
    scale = float(np.std(train @ whiten))
    whiten /= scale
    unwhiten = eigenvectors @ np.diag(eigenvalues ** 0.5) @ eigenvectors.T * scale

    def to_pixels(rows):
        return np.asarray(rows, dtype=np.float64) @ unwhiten

    return ((train @ whiten).astype(np.float32), (test @ whiten).astype(np.float32),
            to_pixels)


def filter_localisation(filters, image_shape, window=None):
    """How localised each filter is: its energy's share in its best window.

    Each filter (a flat image) has its mean removed; the statistic is the
    fraction of its energy (sum of squared weights) inside the
    ``window x window`` square that holds the most. 1 means all of the
    filter lies in that square; filters of independent random weights score
    about ``window**2 / (height * width)`` plus a little for the best of the
    possible squares (0.35 for 12x12 filters and 6x6 windows).

    Parameters
    ----------
    filters : array-like of shape (n_filters, height * width)
    image_shape : tuple of int
        ``(height, width)`` of one filter.
    window : int, default=None
        Side of the square; None uses half the shorter side.

    Returns
    -------
    localisation : ndarray of shape (n_filters,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_replearn.datasets import filter_localisation
    >>> spot = np.zeros((1, 64))
    >>> spot[0, [18, 19]] = [1.0, 0.5]
    >>> filter_localisation(spot, (8, 8)).round(2)
    array([0.98])
    """
    height, width = image_shape
    filters = np.asarray(filters, dtype=np.float64)
    if filters.ndim != 2 or filters.shape[1] != height * width:
        raise ValueError(
            f"filters must have shape (n_filters, {height * width}) for "
            f"image_shape={tuple(image_shape)}; got {filters.shape}."
        )
    filters = filters.reshape(-1, height, width)
    window = window or max(1, min(height, width) // 2)
    if not 1 <= window <= min(height, width):
        raise ValueError(f"window must be between 1 and {min(height, width)}; "
                         f"got {window}.")
    energy = (filters - filters.mean(axis=(1, 2), keepdims=True)) ** 2
    # Window sums from a summed-area table.
    table = np.pad(energy.cumsum(axis=1).cumsum(axis=2), ((0, 0), (1, 0), (1, 0)))
    sums = (table[:, window:, window:] - table[:, :-window, window:]
            - table[:, window:, :-window] + table[:, :-window, :-window])
    total = energy.sum(axis=(1, 2))
    return sums.max(axis=(1, 2)) / np.where(total > 0, total, 1.0)
