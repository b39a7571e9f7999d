"""Grid search on Ray's joblib backend (the ``scale`` extra; skipped without Ray).

A local Ray instance with 2 CPUs serves the module; its session files go to a
temporary folder that is removed afterwards, and the teardown checks that no
Ray process outlives ``ray.shutdown()``.
"""

import os
import secrets
import shutil
import tempfile
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
ray_joblib = pytest.importorskip("ray.util.joblib")
pytest.importorskip("psutil")

import joblib  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from sklearn_replearn import AutoencoderTransformer  # noqa: E402
from tests._processes import assert_processes_end, descendants  # noqa: E402

# Measured on the 2-core development machine (shared, loaded): ray.init ~6 s.
RAY_INIT_BUDGET_S = 60


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ray_cluster():
    before = set(descendants())
    # A short path: Ray's socket paths must stay under 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="ray")
    with pytest.MonkeyPatch.context() as env:
        # Ray >= 2.5x turns token authentication on for a new local cluster
        # and saves a generated token to ~/.ray/auth_token; giving it a token
        # keeps authentication on and writes nothing outside temp dirs.
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, _temp_dir=temp_dir)
        init_s = time.perf_counter() - start
        assert init_s < RAY_INIT_BUDGET_S, f"ray.init took {init_s:.1f} s"
        ray_joblib.register_ray()
        try:
            yield init_s
        finally:
            started = [proc for pid, proc in descendants().items()
                       if pid not in before]
            ray.shutdown()
            try:
                assert_processes_end(started)
                assert not ray.is_initialized()
            finally:
                shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_grid_search_on_ray_matches_n_jobs_1(ray_cluster):
    X, y = load_digits(return_X_y=True)
    X, y = (X[:300] / 16.0).astype(np.float32), y[:300]
    pipe = Pipeline([
        ("ae", AutoencoderTransformer(hidden_layer_sizes=(32,), max_iter=5,
                                      tol=None, random_state=0, device="cpu")),
        ("clf", LogisticRegression(max_iter=300)),
    ])
    grid = {"ae__n_components": [4, 12]}
    serial = GridSearchCV(pipe, grid, cv=3, n_jobs=1).fit(X, y)
    with joblib.parallel_backend("ray"):
        parallel = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"],
                               rtol=0, atol=1e-12)
    assert np.ptp(serial.cv_results_["mean_test_score"]) > 0.05
    # The fits ran in Ray worker processes, not here.
    @ray.remote
    def pid():
        return os.getpid()

    assert ray.get(pid.remote()) != os.getpid()
