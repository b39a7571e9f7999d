"""Class labels for supervised fits: checked, sorted, and as indices."""

import numpy as np
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import column_or_1d

__all__ = ["encode_class_labels"]


def encode_class_labels(y, n_samples, classes=None):
    """Labels as indices into ``classes`` (the sorted labels of y by default)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            f"y must be a 1-D array of class labels; got an array of shape "
            f"{y.shape}. Pass one label per sample, or y=None (or "
            "supervision_weight=0) for unsupervised learning."
        )
    if y.shape[0] != n_samples:
        raise ValueError(
            f"y has {y.shape[0]} labels but X has {n_samples} samples; pass one "
            "label per row of X."
        )
    y = column_or_1d(y)
    target_type = type_of_target(y, input_name="y")
    if target_type == "unknown":
        raise ValueError(
            f"Unknown label type: y of dtype {y.dtype} holds no class labels "
            "sklearn can read (e.g. Python objects). Pass integer or string "
            "labels, or supervision_weight=0 to learn the dictionary without y."
        )
    if target_type not in ("binary", "multiclass"):
        raise ValueError(
            f"Supervised dictionary learning needs class labels, but y is "
            f"{target_type!r} (e.g. {y[:3].tolist()}). Pass class labels, or "
            "supervision_weight=0 to learn the dictionary without y."
        )
    if classes is None:
        classes, y_index = np.unique(y, return_inverse=True)
        return classes, y_index
    classes = np.asarray(classes)
    unseen = np.setdiff1d(y, classes)
    if unseen.size:
        raise ValueError(
            f"y contains labels {unseen[:5].tolist()} that are not among the "
            f"classes {classes.tolist()} of the first supervised partial_fit "
            "call; pass classes=<all labels> on that first call."
        )
    sorted_classes = np.unique(classes)
    return sorted_classes, np.searchsorted(sorted_classes, y)
