"""Helpers for running the transformers on Dask (the ``scale`` extra).

Read more in the :ref:`User Guide <guide-scaling>`.

Training and model selection across workers need nothing from us: the
estimators pickle cleanly, so ``joblib.parallel_backend("dask")`` (or Ray's
``"ray"`` backend) around ``GridSearchCV``, ``dask_ml.wrappers.ParallelPostFit``
and ``dask_ml.wrappers.Incremental`` work as they are (see the user guide's
scaling page).
This module holds the two recipes where a few lines of glue help:

* :func:`dask_transform` maps a fitted transformer over the row blocks of a
  dask array and, unlike ``ParallelPostFit``, reports the output's real width
  before anything is computed;
* :func:`extract_features` runs a fitted transformer (typically
  :class:`~sklearn_replearn.PretrainedCNNFeatures`) over many image files,
  one task per partition of the file list, each writing its own ``.npy``
  file; :func:`load_features` reads them back in order.

``dask`` is imported only when these functions are called.
"""

import math
import os
import re
import uuid
from numbers import Integral

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._utils import import_optional, read_path_list, write_path_list

__all__ = ["dask_transform", "extract_features", "load_features"]

_PART_FORMAT = "features-{:05d}"
_PART_NAME = re.compile(r"((?:features-)(\d{5,}))\.npy")


def _import_dask():
    return import_optional("dask", feature="This helper", extra="scale",
                           package="dask[distributed]")


def _output_width(estimator):
    """Width of ``estimator.transform``'s output, without running it."""
    try:
        return len(estimator.get_feature_names_out())
    except (AttributeError, TypeError, ValueError):
        pass
    width = getattr(estimator, "_n_features_out", None)
    if width is None:
        raise TypeError(
            f"Cannot tell the output width of {type(estimator).__name__} without "
            "running it (it has no get_feature_names_out); compute a small block "
            "first, or use ParallelPostFit and .compute_chunk_sizes()."
        )
    return int(width)


def dask_transform(estimator, X, *, dtype=None):
    """Transform a dask array block by block, with the right output shape.

    ``dask_ml.wrappers.ParallelPostFit(estimator).transform(X)`` is lazy too,
    but it reports the *input's* shape until computed (``(n, n_features)``
    instead of ``(n, n_components)``), which breaks code that slices or
    stacks the result before computing it. This gives the output chunks and
    ``meta`` to dask, so that ``shape`` is right from the start.

    Parameters
    ----------
    estimator : fitted transformer
        Any fitted estimator with ``transform`` and ``get_feature_names_out``
        (all of this package's transformers). It is serialized once into the
        task graph, not once per block.
    X : dask.array.Array of shape (n_samples, n_features)
        Data to transform. Columns are rechunked into one block (``transform``
        needs whole rows); row chunks are kept, one task each.
    dtype : numpy dtype, default=None
        dtype of the result; default: X's dtype when it is float32/float64
        (the transformers preserve it), else float64.

    Returns
    -------
    X_new : dask.array.Array of shape (n_samples, n_features_out)
        Lazy; ``.compute()`` gives ``estimator.transform`` of each row block,
        stacked. That equals the in-memory transform of the whole data up to
        float32 rounding (matrix products over batches of other sizes round
        differently), and exactly when the row chunks are multiples of the
        estimator's ``batch_size``.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> from sklearn_replearn import AutoencoderTransformer
    >>> from sklearn_replearn.scale import dask_transform
    >>> X = np.random.RandomState(0).rand(40, 6)
    >>> ae = AutoencoderTransformer(n_components=2, max_iter=2, tol=None,
    ...                             random_state=0).fit(X)
    >>> lazy = dask_transform(ae, da.from_array(X, chunks=10))
    >>> lazy.shape
    (40, 2)
    >>> bool(np.allclose(lazy.compute(), ae.transform(X), rtol=0, atol=1e-6))
    True
    """
    _import_dask()
    import dask.array as da

    if not isinstance(X, da.Array):
        raise TypeError(
            f"dask_transform expects a dask.array.Array; got {type(X).__name__}. "
            "Call estimator.transform directly on in-memory data."
        )
    if X.ndim != 2:
        raise ValueError(
            f"dask_transform expects a 2-D array (n_samples, n_features); got "
            f"shape {X.shape}."
        )
    check_is_fitted(estimator)
    n_features_in = getattr(estimator, "n_features_in_", None)
    if n_features_in is not None and X.shape[1] != n_features_in:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} was "
            f"fitted with {n_features_in}."
        )
    if dtype is None:
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    dtype = np.dtype(dtype)
    width = _output_width(estimator)
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X.map_blocks(
        _transform_block,
        estimator,
        dtype,
        chunks=(X.chunks[0], (width,)),
        dtype=dtype,
        meta=np.empty((0, width), dtype=dtype),
    )


def _transform_block(block, estimator, dtype):
    return np.asarray(estimator.transform(block), dtype=dtype)


def _count(name, value):
    """``value`` as an int >= 1, or a clear error (1.5 would silently become 1)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(
            f"{name} must be an int (a number of files or tasks); got {value!r} "
            f"of type {type(value).__name__}. Pass e.g. {name}=256."
        )
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}.")
    return int(value)


def _partitions(n_items, n_partitions, partition_size):
    if partition_size is not None:
        size = _count("partition_size", partition_size)
    else:
        size = math.ceil(n_items / _count("n_partitions", n_partitions))
    return [slice(start, min(start + size, n_items))
            for start in range(0, n_items, size)]


def extract_features(
    estimator,
    paths,
    out_dir,
    *,
    n_partitions=None,
    partition_size=None,
    overwrite=False,
    scheduler=None,
):
    """Transform many image files in parallel tasks, writing features to disk.

    The file list is cut into partitions; each partition is one Dask task
    that loads its images, runs ``estimator.transform`` and writes
    ``features-NNNNN.npy`` (one row per image) and ``features-NNNNN.paths.jsonl``
    (its image paths, one a line) into ``out_dir``. Workers return only file
    names, so nothing large travels back to the client, and a partition that
    already exists with the same paths is skipped (a rerun resumes a job that
    was interrupted). The tasks run on whatever scheduler is active: a
    ``distributed.Client`` when one exists, else Dask's local threads.

    Parameters
    ----------
    estimator : fitted transformer
        Typically a fitted :class:`~sklearn_replearn.PretrainedCNNFeatures`;
        any fitted estimator whose ``transform`` accepts a list of paths. It
        is sent once to each worker (pickled), not once per task.
    paths : sequence of str or os.PathLike
        The image files, in the order the features should have.
    out_dir : str or os.PathLike
        Folder for the feature files (created if needed).
    n_partitions : int, default=None
        Number of tasks; default ``ceil(len(paths) / 256)``.
    partition_size : int, default=None
        Files per task, instead of ``n_partitions``.
    overwrite : bool, default=False
        Recompute partitions whose files already exist.
    scheduler : str or distributed.Client, default=None
        A client to run on (default: the current ``distributed`` client, if
        any), or a scheduler name for ``dask.compute`` (``"threads"``,
        ``"processes"``, ``"sync"``). With a client, the model is first
        broadcast to every worker.

    Returns
    -------
    feature_files : list of str
        The ``.npy`` files written (or kept), in the order of ``paths``;
        :func:`load_features` stacks them.

    Examples
    --------
    Writing files, so not run here (``tests/test_scale.py`` runs it on a
    folder of images, on a two-worker cluster):

    >>> from distributed import Client  # doctest: +SKIP
    >>> from sklearn_replearn import PretrainedCNNFeatures
    >>> from sklearn_replearn.scale import extract_features, load_features
    >>> client = Client(n_workers=4)  # doctest: +SKIP
    >>> cnn = PretrainedCNNFeatures("resnet50").fit(paths[:1])  # doctest: +SKIP
    >>> files = extract_features(cnn, paths, "features/")  # doctest: +SKIP
    >>> X, X_paths = load_features("features/")  # doctest: +SKIP
    """
    dask = _import_dask()
    check_is_fitted(estimator)
    paths = [os.fspath(path) for path in paths]
    if not paths:
        raise ValueError("extract_features got no image paths.")
    if n_partitions is not None and partition_size is not None:
        raise ValueError("Pass n_partitions or partition_size, not both.")
    if n_partitions is None and partition_size is None:
        partition_size = 256
    slices = _partitions(len(paths), n_partitions, partition_size)
    _check_scheduler(scheduler)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    extra = _existing_parts(out_dir)[len(slices):]
    if extra and not overwrite:
        raise ValueError(
            f"{out_dir!r} already holds {len(extra)} feature file(s) beyond the "
            f"{len(slices)} partitions of this run (e.g. {extra[0]}.npy); use an "
            "empty folder, or overwrite=True to replace them."
        )
    for name in extra:
        for suffix in (".npy", ".paths.jsonl"):
            target = os.path.join(out_dir, name + suffix)
            if os.path.exists(target):
                os.remove(target)
    client = _distributed_client(scheduler)
    if client is not None:
        # Send the model to every worker once, so that tasks can run anywhere
        # (a model held by one worker would pull every task to that worker).
        shared = client.scatter(estimator, broadcast=True, hash=False)
        run = uuid.uuid4().hex[:8]
        futures = [
            client.submit(_extract_partition, shared, paths[rows], out_dir, index,
                          overwrite, key=f"extract-features-{index}-{run}",
                          pure=False)
            for index, rows in enumerate(slices)
        ]
        try:
            written = client.gather(futures)
        finally:
            client.cancel([shared, *futures])
    else:
        shared = dask.delayed(estimator, pure=True)
        tasks = [
            dask.delayed(_extract_partition, pure=False)(
                shared, paths[rows], out_dir, index, overwrite,
                dask_key_name=f"extract-features-{index}",
            )
            for index, rows in enumerate(slices)
        ]
        kwargs = {} if scheduler is None else {"scheduler": scheduler}
        written = dask.compute(*tasks, **kwargs)
    return list(written)


def _check_scheduler(scheduler):
    """Refuse a scheduler Dask would refuse, naming the choices (Dask's own
    error names neither the parameter nor this function)."""
    from concurrent.futures import Executor

    from dask.base import named_schedulers

    names = sorted({*named_schedulers, "distributed"})
    if isinstance(scheduler, str):
        if scheduler.lower() not in {*names, "dask.distributed"}:
            raise ValueError(
                f"extract_features got scheduler={scheduler!r}, which is not a "
                f"Dask scheduler; pass one of {names} (e.g. 'threads', "
                "'processes' or 'sync'), a distributed.Client, or None for the "
                "current client (else Dask's local threads)."
            )
    elif not (scheduler is None or hasattr(scheduler, "scatter")
              or callable(scheduler) or isinstance(scheduler, Executor)):
        raise TypeError(
            f"extract_features got scheduler={scheduler!r} of type "
            f"{type(scheduler).__name__}; pass a scheduler name ({names}), a "
            "distributed.Client, a concurrent.futures Executor, or None."
        )


def _distributed_client(scheduler):
    """The ``distributed.Client`` to run on: the one given, or the default."""
    if scheduler is not None and not isinstance(scheduler, str):
        return scheduler if hasattr(scheduler, "scatter") else None
    if scheduler is not None:
        return None
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:  # no client running
        return None


def _existing_parts(out_dir):
    """The partitions written, in partition order (by number: past 99999
    partitions the names outgrow the zero padding). Temporary files of a
    task killed before its rename are not partitions."""
    parts = (_PART_NAME.fullmatch(name) for name in os.listdir(out_dir))
    return [match.group(1) for match in
            sorted((m for m in parts if m), key=lambda m: int(m.group(2)))]


def _extract_partition(estimator, paths, out_dir, index, overwrite):
    """One task: features of ``paths`` into ``out_dir/features-<index>``."""
    stem = os.path.join(out_dir, _PART_FORMAT.format(index))
    npy, listing = stem + ".npy", stem + ".paths.jsonl"
    if not overwrite and os.path.exists(npy) and os.path.exists(listing):
        if read_path_list(listing) == [str(path) for path in paths]:
            return npy
    features = np.asarray(estimator.transform(list(paths)))
    if features.shape[0] != len(paths):
        raise ValueError(
            f"{type(estimator).__name__}.transform gave {features.shape[0]} rows "
            f"for {len(paths)} files in partition {index}."
        )
    # Write under temporary names and rename, so that a task killed halfway
    # (or retried by the scheduler) never leaves a truncated file behind.
    pid = os.getpid()
    with open(f"{stem}.{pid}.npy.tmp", "wb") as handle:
        np.save(handle, features)
    with open(f"{listing}.{pid}.tmp", "w", encoding="utf-8") as handle:
        write_path_list(handle, paths)
    # The listing is the commit marker: drop the old one first, move the
    # features in, then the listing, so a listing never sits beside features
    # of other files.
    if os.path.exists(listing):
        os.remove(listing)
    os.replace(f"{stem}.{pid}.npy.tmp", npy)
    os.replace(f"{listing}.{pid}.tmp", listing)
    return npy


def load_features(out_dir):
    """Read the features :func:`extract_features` wrote, in order.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The folder given to :func:`extract_features`.

    Returns
    -------
    X : ndarray of shape (n_images, n_features)
        The partitions' features, stacked.
    paths : list of str
        The image path of each row.
    """
    out_dir = os.fspath(out_dir)
    names = _existing_parts(out_dir) if os.path.isdir(out_dir) else []
    if not names:
        raise ValueError(f"No features-*.npy files in {out_dir!r}.")
    blocks, paths = [], []
    for name in names:
        blocks.append(_load_part(os.path.join(out_dir, name + ".npy")))
        paths.extend(read_path_list(os.path.join(out_dir, name + ".paths.jsonl")))
    X = np.concatenate(blocks)
    if X.shape[0] != len(paths):
        raise ValueError(
            f"{out_dir!r} holds {X.shape[0]} feature rows but {len(paths)} paths; "
            "the folder mixes files of different runs."
        )
    return X, paths


def _load_part(path):
    """One partition's features, or a ValueError that calls the file corrupt.

    numpy's own errors would advise ``allow_pickle=True`` for a file that is
    not an array of numbers: loading it that way could run its code.
    """
    try:
        features = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        with open(path, "rb") as handle:
            header = handle.read(6) == b"\x93NUMPY"
        if not header:
            reason = "it does not start with the .npy header"
        elif "pickle" in str(error):
            reason = "it holds Python objects, not numbers"
        else:
            reason = str(error).rstrip(".") or type(error).__name__
        raise ValueError(
            f"{path} is corrupt: it is not a .npy array of features ({reason}). "
            "Delete it and rerun extract_features with the same paths (it "
            "recomputes the missing partitions), or rerun with overwrite=True."
        ) from error
    if features.ndim != 2 or features.dtype.kind not in "biuf":
        raise ValueError(
            f"{path} is corrupt: it holds an array of shape {features.shape} and "
            f"dtype {features.dtype}, not rows of features. Delete it and rerun "
            "extract_features with the same paths, or rerun with overwrite=True."
        )
    return features
