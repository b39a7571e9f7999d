"""The labelled data sets of the quality suite, and its classifier pipeline.

For ``tests/test_supervised_margin.py``: the same fixed splits as
``benchmarks/bench_quality.py`` (digits, textures, faces; training rows capped
at 2000 and test rows at 1000 by a fixed stratified subsample) and the same
pipeline as ``benchmarks/supervised_margin.py`` (codes of width 16, then
``StandardScaler`` and ``LogisticRegression``). The test's thresholds were
measured on these arrays, so they are rebuilt here rather than imported from
the benchmark scripts, which are scripts, not an importable package.
``test_supervised_margin.py`` checks that the two stay identical wherever the
benchmarks folder is present.

The data ship with scikit-learn and scikit-image; nothing is downloaded.
"""

import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DATASETS = ("digits", "textures", "faces")
TEXTURE_IMAGES = ("brick", "grass", "gravel", "moon", "coins", "cell", "camera")
DATA_SEED = 0  # fixes the splits, patch positions and subsamples


def _gray(image):
    """An image as 2-d float64 in [0, 1]."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    image = img_as_float(image)
    return rgb2gray(image) if image.ndim == 3 else image


def _patches_from_halves(image, size, n_train, n_test, rng):
    """Random ``size x size`` patches: training ones wholly in the left half of
    ``image``, test ones wholly in the right half (no overlap across them)."""
    height, width = image.shape
    half = width // 2

    def cut(n, x_low, x_high):
        ys = rng.randint(0, height - size + 1, n)
        xs = rng.randint(x_low, x_high - size + 1, n)
        return np.stack([image[y:y + size, x:x + size] for y, x in zip(ys, xs)])

    return cut(n_train, 0, half), cut(n_test, half, width)


def _block_mean(patches, factor):
    n, height, width = patches.shape
    return patches.reshape(n, height // factor, factor, width // factor,
                           factor).mean(axis=(2, 4))


def _cap(X, y, n_max, rng):
    """At most ``n_max`` rows, by a fixed stratified subsample."""
    if len(X) <= n_max:
        return X, y
    keep, _ = train_test_split(np.arange(len(X)), train_size=n_max, stratify=y,
                               random_state=rng.randint(2**31 - 1))
    keep = np.sort(keep)
    return X[keep], y[keep]


def _digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, stratify=y,
                            random_state=DATA_SEED)


def _textures(n_train_per_image=300, n_test_per_image=150):
    """24x24 patches block-averaged to 12x12, labelled by their image."""
    import skimage.data

    rng = np.random.RandomState(DATA_SEED)
    parts = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(TEXTURE_IMAGES):
        image = _gray(getattr(skimage.data, name)())
        train, test = _patches_from_halves(image, 24, n_train_per_image,
                                           n_test_per_image, rng)
        for key, patches in (("train", train), ("test", test)):
            small = _block_mean(patches, 2)
            parts[key][0].append(small.reshape(len(small), -1))
            parts[key][1].append(np.full(len(small), label))
    (X_train, y_train), (X_test, y_test) = (
        (np.concatenate(xs), np.concatenate(ys)) for xs, ys in parts.values())
    return X_train, X_test, y_train, y_test


def _faces():
    """``lfw_subset``: the first 100 images are faces, the last 100 not."""
    import skimage.data

    images = skimage.data.lfw_subset()
    X = images.reshape(len(images), -1).astype(np.float64)
    y = np.r_[np.ones(100, dtype=int), np.zeros(100, dtype=int)]
    return train_test_split(X, y, test_size=0.5, stratify=y,
                            random_state=DATA_SEED)


_LOADERS = {"digits": _digits, "textures": _textures, "faces": _faces}


def outer_split(name, max_train=2000, max_test=1000):
    """The fixed float32 ``(X_train, X_test, y_train, y_test)`` of ``name``."""
    X_train, X_test, y_train, y_test = _LOADERS[name]()
    rng = np.random.RandomState(DATA_SEED)
    X_train, y_train = _cap(X_train, y_train, max_train, rng)
    X_test, y_test = _cap(X_test, y_test, max_test, rng)
    return (X_train.astype(np.float32), X_test.astype(np.float32), y_train,
            y_test)


def accuracy(data, seed, supervised):
    """Test accuracy of DictionaryLearner codes -> StandardScaler ->
    LogisticRegression, the dictionary fit with or without the labels."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_replearn import DictionaryLearner

    X_train, X_test, y_train, y_test = data
    params = {"n_components": 16, "random_state": seed, "device": "cpu"}
    if not supervised:
        params["supervision_weight"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DictionaryLearner(**params).fit(X_train, y_train)
        classifier = make_pipeline(StandardScaler(),
                                   LogisticRegression(max_iter=2000))
        classifier.fit(model.transform(X_train), y_train)
        return classifier.score(model.transform(X_test), y_test)
