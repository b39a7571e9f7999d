"""``image_shape``: the one reader of the (channels, height, width) parameter."""

import math

__all__ = ["check_image_shape"]


def check_image_shape(image_shape, n_features, *, what="X", allow_2d=False,
                      needed_by="reading flat rows as images"):
    """``image_shape`` as a tuple of ints that holds ``n_features`` values.

    One entry may be -1 (inferred, as in ``numpy.reshape``). With
    ``allow_2d=True`` a ``(height, width)`` pair is accepted too (plots).

    Parameters
    ----------
    image_shape : tuple of int or None
        The shape given by the user.
    n_features : int
        Values per row that the shape must hold.
    what : str, default="X"
        What the rows are, for the messages.
    allow_2d : bool, default=False
        Accept ``(height, width)`` as well as ``(channels, height, width)``.
    needed_by : str, default="reading flat rows as images"
        What needs the shape, for the message when it is None.

    Returns
    -------
    shape : tuple of int

    Raises
    ------
    ValueError
        If the shape is missing, malformed or does not hold ``n_features``.

    Examples
    --------
    >>> check_image_shape((1, 8, -1), 64)
    (1, 8, 8)
    >>> check_image_shape((8, 8), 64, allow_2d=True)
    (8, 8)
    """
    if image_shape is None:
        raise ValueError(
            f"{what} has {n_features} columns: {needed_by} needs "
            "image_shape=(channels, height, width), e.g. image_shape=(1, 8, 8) "
            "for sklearn's digits."
        )
    lengths = (2, 3) if allow_2d else (3,)
    form = ("(height, width) or (channels, height, width)" if allow_2d
            else "(channels, height, width)")
    try:
        shape = [int(size) for size in image_shape]
    except (TypeError, ValueError):
        raise ValueError(
            f"image_shape must be {form} of positive ints; got {image_shape!r}."
        ) from None
    n_unknown = shape.count(-1)
    if len(shape) not in lengths or n_unknown > 1 or any(
            size < 1 for size in shape if size != -1):
        raise ValueError(
            f"image_shape must be {form} of positive ints (one may be -1, "
            f"inferred as in numpy.reshape); got {image_shape!r}."
        )
    known = math.prod(size for size in shape if size != -1)
    if n_unknown:
        if n_features % known:
            raise ValueError(
                f"image_shape={tuple(image_shape)} cannot hold {n_features} values "
                f"per row of {what}: {n_features} is not a multiple of {known}."
            )
        shape[shape.index(-1)] = n_features // known
    elif known != n_features:
        raise ValueError(
            f"image_shape={tuple(image_shape)} has {known} values per image, but "
            f"{what} has {n_features} values per row; rows must be images "
            "flattened in C-order (images.reshape(n_samples, -1)) with channels "
            "first."
        )
    return tuple(shape)
