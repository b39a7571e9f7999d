"""Scaling out on Dask: grid search on workers, ParallelPostFit, Incremental,
out-of-core partial_fit over a memmap, and file-partitioned feature extraction.

Needs the ``scale`` extra (dask, distributed, dask-ml); skipped without it. One
two-process LocalCluster serves the whole module; its teardown checks that no
worker process outlives it.
"""

import os
import pickle
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")
pytest.importorskip("psutil")

import joblib  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.datasets import load_digits, load_sample_images  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from torch import nn  # noqa: E402

from sklearn_replearn import (  # noqa: E402
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)
from sklearn_replearn.scale import (  # noqa: E402
    dask_transform,
    extract_features,
    load_features,
)
from tests._processes import assert_processes_end, descendants  # noqa: E402

ParallelPostFit = dask_ml_wrappers.ParallelPostFit
Incremental = dask_ml_wrappers.Incremental


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A LocalCluster of 2 worker processes (1 thread each) for this module."""
    before = set(descendants())
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True,
        dashboard_address=None,
        local_directory=str(tmp_path_factory.mktemp("dask-scratch")),
    )
    client = distributed.Client(cluster)
    started = {pid: proc for pid, proc in descendants().items()
               if pid not in before}
    yield client
    client.close()
    cluster.close()
    assert_processes_end(started.values())
    assert not cluster.workers


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:360] / 16.0).astype(np.float32), y[:360]


def _worker_pids(client):
    return set(client.run(os.getpid).values())


# ------------------------------------------------------------- grid search
@pytest.mark.slow
def test_grid_search_on_dask_workers_matches_n_jobs_1(client, digits):
    X, y = digits
    pipe = Pipeline([
        ("ae", AutoencoderTransformer(hidden_layer_sizes=(32,), max_iter=8,
                                      tol=None, random_state=0, device="cpu")),
        ("clf", LogisticRegression(max_iter=300)),
    ])
    grid = {"ae__n_components": [4, 12], "ae__activation": ["relu", "tanh"]}
    serial = GridSearchCV(pipe, grid, cv=3, n_jobs=1).fit(X, y)

    with distributed.get_task_stream(client) as stream:
        with joblib.parallel_backend("dask"):
            parallel = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    # The fits really ran on the two worker processes.
    assert len(stream.data) >= 4 * 3
    assert {task["worker"] for task in stream.data} == set(
        client.scheduler_info()["workers"])

    assert parallel.best_params_ == serial.best_params_
    for key in ("mean_test_score", "std_test_score", "split0_test_score"):
        np.testing.assert_allclose(parallel.cv_results_[key],
                                   serial.cv_results_[key], rtol=0, atol=1e-12)
    # Scores differ between candidates, so equal results are not trivial.
    assert np.ptp(serial.cv_results_["mean_test_score"]) > 0.05
    np.testing.assert_array_equal(parallel.predict(X), serial.predict(X))


@pytest.mark.slow
def test_estimators_round_trip_through_a_worker(client, digits):
    X, _ = digits
    ae = AutoencoderTransformer(n_components=3, max_iter=3, tol=None,
                                random_state=0, device="cpu").fit(X)
    remote = client.submit(lambda est, data: est.transform(data), ae, X).result()
    np.testing.assert_array_equal(remote, ae.transform(X))
    # Fitting on a worker gives the same model as fitting here.
    fitted = client.submit(lambda est, data: est.fit(data), ae, X, pure=False).result()
    np.testing.assert_array_equal(fitted.transform(X), ae.transform(X))
    assert pickle.loads(pickle.dumps(fitted)).n_iter_ == 3


# -------------------------------------------------------- ParallelPostFit
def _fitted_transformers(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return [
            AutoencoderTransformer(n_components=6, max_iter=3, tol=None,
                                   random_state=0, device="cpu").fit(X),
            VAETransformer(n_components=4, max_iter=3, tol=None,
                           random_state=0, device="cpu").fit(X),
            DictionaryLearner(n_components=10, alpha=0.1, max_iter=2,
                              random_state=0, device="cpu").fit(X),
        ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["ae", "vae", "dictionary"])
@pytest.mark.slow
def test_parallel_post_fit_transform_matches_in_memory(client, digits, index):
    X, _ = digits
    est = _fitted_transformers(X)[index]
    expected = est.transform(X)
    width = expected.shape[1]
    # Row chunks that are multiples of batch_size: the same batches as in
    # memory (DictionaryLearner's default is "auto"; its codes do not depend
    # on the batch anyway).
    rows = est.batch_size if isinstance(est.batch_size, int) else 128
    X_dask = da.from_array(X, chunks=(2 * rows, -1))

    lazy = ParallelPostFit(est).transform(X_dask)
    # The gotcha: the lazy result reports the input's width until computed.
    assert lazy.shape == X.shape != expected.shape
    # Workers run torch with one thread (dask sets OMP_NUM_THREADS=1): sums
    # round differently from this process, most visibly in the dictionary's
    # iterative lasso.
    np.testing.assert_allclose(lazy.compute(), expected, rtol=0, atol=1e-5)
    assert lazy.compute_chunk_sizes().shape == expected.shape

    meta = np.empty((0, width), dtype=X.dtype)
    with_meta = ParallelPostFit(est, transform_meta=meta).transform(X_dask)
    assert type(with_meta._meta) is np.ndarray and with_meta.dtype == X.dtype

    right = dask_transform(est, X_dask)
    assert right.shape == expected.shape and right.dtype == expected.dtype
    assert right.chunks[1] == (width,)
    np.testing.assert_allclose(right.compute(), expected, rtol=0, atol=1e-5)
    # Other row chunks: the same features up to float32 rounding, which in
    # the dictionary's lasso can flip one row's stopping decision at
    # transform_tol (measured: one row of 1,797 moved by 6e-5 with one
    # dictionary, none with another).
    odd = dask_transform(est, da.from_array(X, chunks=(77, 16))).compute()
    np.testing.assert_allclose(odd, expected, rtol=0, atol=2e-4)


def test_dask_transform_rejects_bad_input(digits):
    X, _ = digits
    ae = _fitted_transformers(X)[0]
    with pytest.raises(TypeError, match="expects a dask.array.Array"):
        dask_transform(ae, X)
    with pytest.raises(ValueError, match="X has 10 features.*fitted with 64"):
        dask_transform(ae, da.from_array(X[:, :10], chunks=50))
    with pytest.raises(ValueError, match="2-D"):
        dask_transform(ae, da.from_array(X[:, 0], chunks=50))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        dask_transform(AutoencoderTransformer(), da.from_array(X, chunks=50))


# --------------------------------------------------- out-of-core training
def _reconstruction_error(est, X):
    return float(np.mean((est.inverse_transform(est.transform(X)) - X) ** 2))


def _models(n_epochs):
    common = dict(random_state=0, device="cpu")
    return {
        "ae": AutoencoderTransformer(n_components=8, hidden_layer_sizes=(64,),
                                     max_iter=n_epochs, tol=None, batch_size=32,
                                     learning_rate=3e-3, **common),
        "vae": VAETransformer(n_components=8, hidden_layer_sizes=(64,),
                              max_iter=n_epochs, tol=None, batch_size=32,
                              learning_rate=3e-3, **common),
        # supervision_weight=0: dask-ml's Incremental passes a placeholder y
        # (the tuple ("", block_index)) to an unsupervised partial_fit, which
        # DictionaryLearner would otherwise take for labels.
        "dictionary": DictionaryLearner(n_components=16, alpha=0.1,
                                        supervision_weight=0.0,
                                        max_iter=n_epochs, tol=None,
                                        batch_size=32, **common),
    }


N_EPOCHS = 15

# How close chunked partial_fit training gets to a full fit's error (the
# dictionary's partial_fit finishes the codes that start from zeros in each
# chunk, since no later epoch revisits them: 22% above the fit without).
_CHUNKED_TOLERANCE = {"ae": 1.10, "vae": 1.10, "dictionary": 1.10}


@pytest.fixture(scope="module")
def full_fit_errors(digits):
    X, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return {name: _reconstruction_error(model.fit(X), X)
                for name, model in _models(N_EPOCHS).items()}


@pytest.mark.parametrize("name", ["ae", "vae", "dictionary"])
@pytest.mark.slow
def test_incremental_reaches_fit_error(client, digits, full_fit_errors, name):
    X, _ = digits
    X_dask = da.from_array(X, chunks=(90, -1))  # 4 blocks
    inc = Incremental(_models(N_EPOCHS)[name], shuffle_blocks=True, random_state=0)
    for _ in range(N_EPOCHS):
        inc.partial_fit(X_dask)
    est = inc.estimator_
    if name != "dictionary":
        assert est.n_iter_ == N_EPOCHS * X_dask.numblocks[0]
    error, reference = _reconstruction_error(est, X), full_fit_errors[name]
    untrained = _reconstruction_error(
        _models(1)[name].partial_fit(X[:90]), X)
    assert error < untrained * 0.9  # it learned something
    assert error <= _CHUNKED_TOLERANCE[name] * reference, (name, error, reference)


@pytest.mark.parametrize("name", ["ae", "vae", "dictionary"])
@pytest.mark.slow
def test_partial_fit_chunk_loop_over_memmap(tmp_path, digits, full_fit_errors,
                                            name):
    X, _ = digits
    path = tmp_path / "X.dat"
    writable = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    writable[:] = X
    writable.flush()
    del writable
    X_disk = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)

    est = _models(N_EPOCHS)[name]
    chunk = 90
    for _ in range(N_EPOCHS):
        for start in range(0, X_disk.shape[0], chunk):
            est.partial_fit(X_disk[start:start + chunk])
    error, reference = _reconstruction_error(est, X), full_fit_errors[name]
    assert error <= _CHUNKED_TOLERANCE[name] * reference, (name, error, reference)
    # The memmap was only read.
    np.testing.assert_array_equal(np.asarray(X_disk), X)
    del X_disk


# ------------------------------------------- feature extraction over files
def _tiny_backbone():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
    )


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, image in enumerate(load_sample_images().images):
        for j, (top, left) in enumerate([(0, 0), (100, 200), (200, 50), (300, 300),
                                         (50, 400), (150, 150), (250, 500)]):
            crop = Image.fromarray(image[top:top + 96, left:left + 128])
            path = folder / f"img{i}_{j}.png"
            crop.resize((40, 30)).save(path)
            paths.append(str(path))
    return paths


@pytest.mark.slow
def test_extract_features_over_files_on_workers(client, image_files, tmp_path):
    cnn = PretrainedCNNFeatures(_tiny_backbone(), weights=None, image_size=24,
                                batch_size=4, device="cpu").fit(image_files[:1])
    expected = cnn.transform(image_files)
    out = tmp_path / "features"

    with distributed.get_task_stream(client) as stream:
        files = extract_features(cnn, image_files, out, partition_size=5)
    assert len(files) == 3  # 14 images in partitions of 5
    assert {task["worker"] for task in stream.data
            if task["key"].startswith("extract-features")} == set(
        client.scheduler_info()["workers"])
    assert sorted(os.listdir(out)) == sorted(
        f"features-{i:05d}{suffix}" for i in range(3)
        for suffix in (".npy", ".paths.jsonl"))
    X, paths = load_features(out)
    assert paths == image_files
    assert X.shape == (14, 16)
    # Fixed-size batches make each image's features independent of its batch.
    np.testing.assert_array_equal(X, expected)

    # A rerun keeps the partitions already written (resuming a stopped job) ...
    mtimes = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)}
    extract_features(cnn, image_files, out, partition_size=5)
    assert mtimes == {name: os.stat(out / name).st_mtime_ns
                      for name in os.listdir(out)}
    # ... refuses to mix with a run of more partitions ...
    with pytest.raises(ValueError, match="beyond the 2 partitions"):
        extract_features(cnn, image_files[:8], out, n_partitions=2)
    # ... and with overwrite=True replaces them all.
    extract_features(cnn, image_files[:8], out, n_partitions=2, overwrite=True)
    X8, paths8 = load_features(out)
    assert paths8 == image_files[:8]
    np.testing.assert_array_equal(X8, expected[:8])


@pytest.mark.slow
def test_extract_features_local_scheduler_and_errors(image_files, tmp_path):
    cnn = PretrainedCNNFeatures(_tiny_backbone(), weights=None, image_size=24,
                                batch_size=4, device="cpu").fit(image_files[:1])
    files = extract_features(cnn, image_files[:6], tmp_path / "a",
                             n_partitions=4, scheduler="sync")
    assert [os.path.basename(f) for f in files] == [
        f"features-{i:05d}.npy" for i in range(3)]  # ceil(6 / 4) = 2 per task
    X, _ = load_features(tmp_path / "a")
    np.testing.assert_array_equal(X, cnn.transform(image_files[:6]))
    with pytest.raises(ValueError, match="no image paths"):
        extract_features(cnn, [], tmp_path / "b")
    with pytest.raises(ValueError, match="not both"):
        extract_features(cnn, image_files, tmp_path / "b", n_partitions=2,
                         partition_size=3)
    with pytest.raises(ValueError, match="partition_size must be >= 1"):
        extract_features(cnn, image_files, tmp_path / "b", partition_size=0)
    with pytest.raises(ValueError, match="No features"):
        load_features(tmp_path / "b")


@pytest.fixture(scope="module")
def tiny_cnn(image_files):
    return PretrainedCNNFeatures(_tiny_backbone(), weights=None, image_size=24,
                                 batch_size=4, device="cpu").fit(image_files[:1])


@pytest.mark.parametrize("name", ["partition_size", "n_partitions"])
@pytest.mark.parametrize("value", [1.5, "2", True, 2.0])
def test_extract_features_refuses_partition_counts_that_are_not_ints(
        tiny_cnn, image_files, tmp_path, name, value):
    # partition_size=1.5 silently ran partitions of 1 file, and "2" was
    # accepted; bools and floats are not counts either.
    with pytest.raises(TypeError, match=rf"{name} must be an int.*got {value!r}"):
        extract_features(tiny_cnn, image_files[:4], tmp_path / "out",
                         **{name: value})
    assert not (tmp_path / "out").exists()


def test_extract_features_refuses_an_unknown_scheduler_by_name(
        tiny_cnn, image_files, tmp_path):
    # dask's own error came through ("Expected one of [distributed, ...]").
    with pytest.raises(ValueError, match=r"scheduler='bogus'.*'threads'.*'sync'"):
        extract_features(tiny_cnn, image_files[:4], tmp_path / "out",
                         scheduler="bogus")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["text", "truncated", "empty", "object array"])
def test_load_features_calls_a_corrupt_file_corrupt(
        tiny_cnn, image_files, tmp_path, damage):
    # numpy's "Cannot load file containing pickled data when
    # allow_pickle=False" came through: advice that would run the file's code.
    files = extract_features(tiny_cnn, image_files[:4], tmp_path,
                             partition_size=np.int64(2), scheduler="sync")
    assert len(files) == 2
    target = tmp_path / "features-00001.npy"
    content = target.read_bytes()
    if damage == "text":
        target.write_text("these are not features\n")
    elif damage == "truncated":
        target.write_bytes(content[:len(content) - 9])
    elif damage == "empty":
        target.write_bytes(b"")
    else:
        np.save(target, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="features-00001.npy is corrupt") as error:
        load_features(tmp_path)
    assert "allow_pickle" not in str(error.value)
    assert "extract_features" in str(error.value)


def test_extract_features_refuses_a_scheduler_of_the_wrong_type(
        tiny_cnn, image_files, tmp_path):
    with pytest.raises(TypeError, match=r"scheduler=3 of type int.*'threads'"):
        extract_features(tiny_cnn, image_files[:4], tmp_path / "out", scheduler=3)
    # Names are case-insensitive, as in Dask.
    files = extract_features(tiny_cnn, image_files[:4], tmp_path / "out",
                             scheduler="SYNC")
    assert len(files) == 1


# ----------------------------- a partition file left behind by a killed task
class _PathLength(TransformerMixin, BaseEstimator):
    """Features of a file path (no files read): its length and char sum."""

    def fit(self, X=None, y=None):
        self.fitted_ = True
        return self

    def transform(self, paths):
        return np.array([[len(p), sum(map(ord, p))] for p in paths], np.float32)


def test_leftover_temporary_file_does_not_break_resume_or_load(tmp_path):
    # extract_features writes "features-NNNNN.<pid>.tmp.npy" then renames it,
    # "so that a task killed halfway never leaves a truncated file behind",
    # and "a rerun resumes a job that was interrupted". But the leftover
    # temporary file of a killed task matches _existing_parts' pattern
    # (features-*.npy): the rerun refuses the folder ("1 feature file(s)
    # beyond the partitions") and load_features looks for its .paths.jsonl.
    pytest.importorskip("dask")
    from sklearn_replearn.scale import extract_features, load_features

    estimator = _PathLength().fit()
    paths = [f"img_{i}.png" for i in range(10)]
    extract_features(estimator, paths, tmp_path, partition_size=3,
                     scheduler="sync")
    # What a task killed between np.save and os.replace leaves.
    np.save(os.path.join(tmp_path, "features-00001.4242.tmp.npy"),
            np.zeros((3, 2), np.float32))
    extract_features(estimator, paths, tmp_path, partition_size=3,
                     scheduler="sync")
    X, X_paths = load_features(tmp_path)
    assert X_paths == paths
    np.testing.assert_array_equal(X, estimator.transform(paths))
