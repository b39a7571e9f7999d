"""DictionaryLearner's checks of data and labels, with messages that carry the
numbers and the fix; and ``tensor_copy``, which keeps a failed call from
changing the fitted arrays."""

import numpy as np

from .._utils import as_tensor
from ..base import _check_squares_fit_float32 as check_squares_fit

__all__ = [
    "check_same_classes",
    "check_same_n_components",
    "check_squares_fit_float32",
    "check_two_classes",
    "tensor_copy",
]


def tensor_copy(array, device):
    """A float32 tensor on ``device`` that shares no memory with ``array``."""
    tensor = as_tensor(array, device=device)
    return tensor.clone() if tensor.device.type == "cpu" else tensor


def check_same_n_components(n_components, components, resolved):
    """partial_fit continues the fitted dictionary: it cannot resize it."""
    fitted = components.shape[0]
    if resolved != fitted:
        raise ValueError(
            f"n_components={n_components} differs from the fitted dictionary's "
            f"{fitted} atoms; partial_fit continues that dictionary, so call fit "
            f"to learn one of another size (or set n_components={fitted})."
        )


def check_two_classes(classes, where):
    """A supervised head needs two classes to tell apart."""
    if len(classes) < 2:
        raise ValueError(
            f"Supervised dictionary learning needs at least 2 classes in y; "
            f"{where} got only 1 class ({classes.tolist()}). Pass labels "
            "of several classes (on a first partial_fit, classes=<all labels>), "
            "or y=None (or supervision_weight=0) for unsupervised learning."
        )


# Supervised training squares the squared norms again: Adam's second moments
# are squared gradients of a loss on the scale of the squared norms (digits
# times 1e10 turned them into inf, then NaN; times 1e8 trains).
_SUPERVISED_SQUARED_NORM_LIMIT = (float(np.finfo(np.float32).max) * 1e-2) ** 0.5


def check_squares_fit_float32(X, *, supervised=False):
    """Raise a ValueError if X's squared norms overflow DictionaryLearner's
    float32 arithmetic: the lasso objective, the Gram of the codes and the
    initial SVD (a bare LinAlgError otherwise), or with ``supervised=True``
    the squared gradients of supervised training.
    """
    if supervised:
        check_squares_fit(X, "DictionaryLearner",
                          limit=_SUPERVISED_SQUARED_NORM_LIMIT,
                          what="the squared gradients of supervised training")
    else:
        check_squares_fit(X, "DictionaryLearner")


def check_same_classes(classes, fitted):
    """``classes`` given to a later ``partial_fit`` must be the fitted ones
    (the head has one row per class; scikit-learn's classifiers check the
    same)."""
    given = np.unique(np.asarray(classes))
    if given.shape != fitted.shape or not np.array_equal(given, fitted):
        raise ValueError(
            f"classes={given.tolist()} differs from the classes the model was "
            f"fitted with, {fitted.tolist()}; pass the same classes (or none) "
            "to later partial_fit calls, or call fit to start over with new ones."
        )
