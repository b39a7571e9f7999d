"""The data sets of the quality suite, with their fixed train/test splits.

One source for ``benchmarks/bench_quality.py`` (and the benchmark scripts
that reuse its splits) and for the tests whose thresholds were measured on
the same arrays (``tests/_labelled_suite.py``). Four data sets, none
downloaded:

* ``digits``: scikit-learn's ``load_digits`` (8x8) divided by 16, stratified
  70/30 split; 10 classes.
* ``textures``: 24x24 grayscale patches block-averaged to 12x12, cut from
  scikit-image's ``TEXTURE_IMAGES`` and labelled by their image; training
  patches lie wholly in the left half of each image, test patches in the
  right half, so overlapping patches never cross the split.
* ``faces``: ``skimage.data.lfw_subset()`` (the first 100 images are faces,
  the last 100 not), face vs non-face, stratified 50/50 split.
* ``patches`` (no labels): 8x8 grayscale patches from scikit-learn's sample
  photos and scikit-image's ``PATCH_IMAGES``, split by image halves.

:func:`load` caps the training and test rows by a fixed (stratified where
labelled) subsample and returns float32 arrays. Everything is seeded by
``DATA_SEED``: the splits never depend on a benchmark's ``--seeds``.
"""

import numpy as np
from sklearn.datasets import load_digits, load_sample_images
from sklearn.model_selection import train_test_split

DATASETS = ("digits", "textures", "faces", "patches")
LABELLED = ("digits", "textures", "faces")
TEXTURE_IMAGES = ("brick", "grass", "gravel", "moon", "coins", "cell", "camera")
PATCH_IMAGES = ("astronaut", "chelsea", "coffee")
DATA_SEED = 0  # fixes the splits, patch positions and subsamples


def gray(image):
    """An image as 2-d float64 in [0, 1]."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    image = img_as_float(image)
    return rgb2gray(image) if image.ndim == 3 else image


def patches_from_halves(image, size, n_train, n_test, rng):
    """Random ``size x size`` patches: training ones wholly in the left half of
    ``image``, test ones wholly in the right half (no overlap across them)."""
    height, width = image.shape
    half = width // 2

    def cut(n, x_low, x_high):
        ys = rng.randint(0, height - size + 1, n)
        xs = rng.randint(x_low, x_high - size + 1, n)
        return np.stack([image[y:y + size, x:x + size] for y, x in zip(ys, xs)])

    return cut(n_train, 0, half), cut(n_test, half, width)


def block_mean(patches, factor):
    """Each ``factor x factor`` block of each patch replaced by its mean."""
    n, height, width = patches.shape
    return patches.reshape(n, height // factor, factor, width // factor,
                           factor).mean(axis=(2, 4))


def cap(X, y, n_max, rng):
    """At most ``n_max`` rows, by a fixed (stratified when labelled) subsample."""
    if len(X) <= n_max:
        return X, y
    if y is None:
        keep = np.sort(rng.choice(len(X), n_max, replace=False))
        return X[keep], None
    keep, _ = train_test_split(np.arange(len(X)), train_size=n_max, stratify=y,
                               random_state=rng.randint(2**31 - 1))
    keep = np.sort(keep)
    return X[keep], y[keep]


def load_digits_split():
    """Digits in [0, 1], stratified 70/30."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, stratify=y,
                            random_state=DATA_SEED)


def load_textures_split(n_train_per_image=300, n_test_per_image=150):
    """24x24 patches block-averaged to 12x12, labelled by their image."""
    import skimage.data

    rng = np.random.RandomState(DATA_SEED)
    parts = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(TEXTURE_IMAGES):
        image = gray(getattr(skimage.data, name)())
        train, test = patches_from_halves(image, 24, n_train_per_image,
                                          n_test_per_image, rng)
        for key, patches in (("train", train), ("test", test)):
            small = block_mean(patches, 2)
            parts[key][0].append(small.reshape(len(small), -1))
            parts[key][1].append(np.full(len(small), label))
    (X_train, y_train), (X_test, y_test) = (
        (np.concatenate(xs), np.concatenate(ys)) for xs, ys in parts.values())
    return X_train, X_test, y_train, y_test


def load_faces_split():
    """``lfw_subset``: the first 100 images are faces, the last 100 not."""
    import skimage.data

    images = skimage.data.lfw_subset()
    X = images.reshape(len(images), -1).astype(np.float64)
    y = np.r_[np.ones(100, dtype=int), np.zeros(100, dtype=int)]
    return train_test_split(X, y, test_size=0.5, stratify=y,
                            random_state=DATA_SEED)


def load_patches_split(n_train_per_image=500, n_test_per_image=250):
    """8x8 grayscale patches of photos, without labels."""
    import skimage.data

    rng = np.random.RandomState(DATA_SEED)
    images = list(load_sample_images().images)
    images += [getattr(skimage.data, name)() for name in PATCH_IMAGES]
    train, test = [], []
    for image in images:
        a, b = patches_from_halves(gray(image), 8, n_train_per_image,
                                   n_test_per_image, rng)
        train.append(a.reshape(len(a), -1))
        test.append(b.reshape(len(b), -1))
    return np.concatenate(train), np.concatenate(test), None, None


LOADERS = {"digits": load_digits_split, "textures": load_textures_split,
           "faces": load_faces_split, "patches": load_patches_split}


def load(name, max_train=2000, max_test=1000):
    """The fixed float32 ``(X_train, X_test, y_train, y_test)`` of ``name``,
    at most ``max_train`` training and ``max_test`` test rows."""
    X_train, X_test, y_train, y_test = LOADERS[name]()
    rng = np.random.RandomState(DATA_SEED)
    X_train, y_train = cap(X_train, y_train, max_train, rng)
    X_test, y_test = cap(X_test, y_test, max_test, rng)
    return (X_train.astype(np.float32), X_test.astype(np.float32), y_train,
            y_test)
