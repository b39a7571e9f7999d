"""Scaling out on Dask: grid search on 2 workers vs n_jobs=1, and transform
throughput of ParallelPostFit / dask_transform vs in-memory.

    python benchmarks/bench_scale.py [--quick] [--repeats N] [--save [PATH]]

Grid search: ``GridSearchCV(Pipeline([AutoencoderTransformer(),
LogisticRegression()]))`` on the digits, timed (a) with ``n_jobs=1`` and torch's
default thread count, (b) with ``n_jobs=1`` and one torch thread, and (c) under
``joblib.parallel_backend("dask")`` on a LocalCluster of 2 worker processes
with 1 thread each (dask sets OMP_NUM_THREADS=1 on workers). The cluster is
started once (its start-up time is printed separately) and warmed with one
search first, so that imports on the workers are not timed.

Transform: a fitted autoencoder over a float32 array, in memory
(``est.transform``) vs ``ParallelPostFit(est).transform(dask_array).compute()``
and ``dask_transform(est, dask_array).compute()`` on the same cluster.

Repetitions are interleaved (a, b, c, a, b, c, ...) and medians reported,
with each ratio to its in-memory / n_jobs=1 peer from the same run. Timings on
a shared machine are noisy: rerun on a quiet machine before quoting them.
"""

import argparse
import statistics
import time
import warnings

import _report
import numpy as np


def _grid_search_case(quick):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from sklearn_replearn import AutoencoderTransformer

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    if quick:
        X, y = X[:600], y[:600]
    pipe = Pipeline([
        ("ae", AutoencoderTransformer(hidden_layer_sizes=(64,), max_iter=10 if quick
                                      else 30, tol=None, random_state=0,
                                      device="cpu")),
        ("clf", LogisticRegression(max_iter=500)),
    ])
    grid = {"ae__n_components": [8, 16], "ae__activation": ["relu", "tanh"]}

    def search(**kwargs):
        return GridSearchCV(pipe, grid, cv=3, **kwargs).fit(X, y)

    n_fits = 4 * 3 + 1
    return search, n_fits, X.shape


def _timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller data and fewer epochs (about a minute)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repetitions (default 3, quick 2)")
    _report.add_save_argument(parser)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    with _report.report(args.save, device="cpu",
                        variant="quick" if args.quick else None):
        run(args)


def run(args):
    repeats = args.repeats or (2 if args.quick else 3)

    import joblib
    import torch
    from dask import array as da
    from dask_ml.wrappers import ParallelPostFit
    from distributed import Client, LocalCluster

    from sklearn_replearn import AutoencoderTransformer
    from sklearn_replearn.scale import dask_transform

    default_threads = torch.get_num_threads()
    start_s, cluster = _timed(lambda: LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
    client = Client(cluster)
    print(f"# LocalCluster(2 worker processes x 1 thread) started in {start_s:.1f} s")
    try:
        search, n_fits, shape = _grid_search_case(args.quick)
        with joblib.parallel_backend("dask"):
            search()  # warm-up: imports on the workers

        def serial_default():
            torch.set_num_threads(default_threads)
            return search(n_jobs=1)

        def serial_one_thread():
            torch.set_num_threads(1)
            try:
                return search(n_jobs=1)
            finally:
                torch.set_num_threads(default_threads)

        def on_dask():
            with joblib.parallel_backend("dask"):
                return search()

        cases = {
            f"n_jobs=1, torch {default_threads} threads": serial_default,
            "n_jobs=1, torch 1 thread": serial_one_thread,
            "dask, 2 workers x 1 thread": on_dask,
        }
        times = {name: [] for name in cases}
        best = {}
        for _ in range(repeats):
            for name, case in cases.items():
                seconds, fitted = _timed(case)
                times[name].append(seconds)
                best[name] = (fitted.best_params_, fitted.best_score_)
        print(f"\n## GridSearchCV: AE + LogisticRegression, {n_fits} fits, "
              f"X {shape}, median of {repeats}")
        reference = statistics.median(times[next(iter(cases))])
        print("| run | seconds | vs n_jobs=1 (default threads) | best params "
              "(same everywhere) |")
        print("|---|---|---|---|")
        for name in cases:
            median = statistics.median(times[name])
            print(f"| {name} | {median:.2f} | {reference / median:.2f}x | "
                  f"{best[name][0]} {best[name][1]:.4f} |")
        if len({repr(value) for value in best.values()}) != 1:
            print("WARNING: best params/scores differ between runs")

        # ------------------------------------------------------ transform
        n_rows = 50_000 if args.quick else 400_000
        X = np.random.RandomState(0).rand(n_rows, 64).astype(np.float32)
        est = AutoencoderTransformer(n_components=16, hidden_layer_sizes=(128,),
                                     max_iter=1, tol=None, batch_size=1024,
                                     random_state=0, device="cpu").fit(X[:5000])
        chunk = 1024 * 25
        X_dask = da.from_array(X, chunks=(chunk, -1)).persist()
        wrapped = ParallelPostFit(est)
        transforms = {
            f"in memory, torch {default_threads} threads": lambda: est.transform(X),
            "ParallelPostFit, 2 workers": lambda: wrapped.transform(X_dask).compute(),
            "dask_transform, 2 workers": lambda: dask_transform(est, X_dask).compute(),
        }
        times = {name: [] for name in transforms}
        outputs = {}
        for _ in range(repeats):
            for name, run in transforms.items():
                seconds, outputs[name] = _timed(run)
                times[name].append(seconds)
        reference_out = outputs[next(iter(transforms))]
        print(f"\n## transform: X {X.shape} float32 -> 16, chunks of {chunk} rows "
              f"(data already on the workers), median of {repeats}")
        reference = statistics.median(times[next(iter(transforms))])
        print("| run | seconds | rows/s | vs in memory | max abs diff |")
        print("|---|---|---|---|---|")
        for name in transforms:
            median = statistics.median(times[name])
            diff = float(np.abs(outputs[name] - reference_out).max())
            print(f"| {name} | {median:.3f} | {n_rows / median:,.0f} | "
                  f"{reference / median:.2f}x | {diff:.1e} |")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
