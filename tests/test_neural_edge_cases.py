"""AutoencoderTransformer and the scaling helpers on inputs their authors had
not tried: seeded fits in threads, your own encoder/decoder changed after
fit or of the wrong width, a last training batch of one row, a row alone
against its batch, a partition file left by a killed task. Each test states
the promise it checks and failed before its fix (an independent review's
findings, 2026-11-27).
"""

import os
import pickle
import warnings

import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_digits
from torch import nn

from sklearn_replearn import AutoencoderTransformer


@pytest.fixture(scope="module")
def digits():
    return (load_digits().data[:300] / 16.0).astype(np.float32)


def _fit_codes(X, seed):
    ae = AutoencoderTransformer(n_components=4, hidden_layer_sizes=(32,),
                                max_iter=3, tol=None, batch_size=16,
                                random_state=seed)
    return ae.fit(X).transform(X)


def test_same_seed_same_model_when_fits_run_in_threads(digits):
    # "same random_state always gives the same result" (utils.seeded), and the
    # README's grid search on Dask workers "the same seeded fits, run
    # elsewhere": fits running concurrently in threads (joblib's threading
    # backend, Dask threads) share torch's global RNG, which seeded() seeds,
    # draws from and restores, so they draw each other's numbers.
    sequential = [_fit_codes(digits, seed) for seed in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        threaded = Parallel(n_jobs=4, backend="threading")(
            delayed(_fit_codes)(digits, seed) for seed in range(4))
    for expected, got in zip(sequential, threaded):
        np.testing.assert_array_equal(got, expected)


def test_pickle_loads_after_set_params_of_encoder(digits):
    # README: saved models are "rebuilt on load from the structure it was
    # fitted with", so a changed structural parameter "no longer writes a
    # file that cannot load". encoder/decoder are not in
    # _STRUCTURAL_PARAMETERS, so the module is rebuilt from the new encoder.
    ae = AutoencoderTransformer(encoder=nn.Linear(64, 4), decoder=nn.Linear(4, 64),
                                max_iter=2, random_state=0).fit(digits)
    codes = ae.transform(digits)
    ae.set_params(encoder=nn.Sequential(nn.Linear(64, 8), nn.ReLU(),
                                        nn.Linear(8, 4)))
    loaded = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(loaded.transform(digits), codes)


def test_partial_fit_refuses_a_changed_encoder(digits):
    # README: parameters that shape the model "cannot change after the first
    # call, and changing them is an error that names the parameter"; a new
    # encoder is silently ignored instead.
    ae = AutoencoderTransformer(encoder=nn.Linear(64, 4), decoder=nn.Linear(4, 64),
                                max_iter=2, random_state=0).fit(digits)
    ae.set_params(encoder=nn.Sequential(nn.Linear(64, 8), nn.ReLU(),
                                        nn.Linear(8, 4)))
    with pytest.raises(ValueError, match="encoder"):
        ae.partial_fit(digits)


@pytest.mark.parametrize("encoder, decoder", [
    (nn.Linear(10, 4), nn.Linear(4, 64)),   # encoder reads 10 features, X has 64
    (nn.Linear(64, 4), nn.Linear(5, 64)),   # decoder reads 5 values, code has 4
])
def test_custom_module_width_mismatch_is_a_clear_error(digits, encoder, decoder):
    # README: bad input is a ValueError/TypeError "never a torch or skorch
    # traceback"; the probe in _checked_module lets torch's RuntimeError
    # ("mat1 and mat2 shapes cannot be multiplied") through.
    ae = AutoencoderTransformer(encoder=encoder, decoder=decoder, max_iter=1)
    with pytest.raises(ValueError):
        ae.fit(digits)


@pytest.mark.parametrize("hidden", [(128,), (64, 32), (50,), (13,)])
def test_one_row_code_equals_its_code_in_a_batch(digits, hidden):
    # Batches run at whole 16-row tiles: with hidden widths that are
    # multiples of 16 (the default 128) a row's code alone is bit-identical
    # to its code in a batch. With other widths the CPU's matmul kernels
    # split a tile by its inner sizes too, and codes differ by float32
    # rounding (measured up to ~3e-8): the README says so.
    ae = AutoencoderTransformer(n_components=8, hidden_layer_sizes=hidden,
                                max_iter=1, tol=None, random_state=0).fit(digits)
    full = ae.transform(digits)
    alone = np.vstack([ae.transform(digits[i:i + 1]) for i in range(0, 200, 5)])
    if all(width % 16 == 0 for width in hidden):
        np.testing.assert_array_equal(alone, full[0:200:5])
    else:
        np.testing.assert_allclose(alone, full[0:200:5], rtol=0, atol=1e-6)


def test_custom_batchnorm_module_trains_when_last_batch_has_one_row(digits):
    # 257 valid rows with batch_size=128 leave a last training batch of one
    # row, on which a user's BatchNorm1d raises torch's ValueError ("Expected
    # more than 1 value per channel when training") in the middle of fit.
    encoder = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                            nn.Linear(32, 4))
    decoder = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 64))
    ae = AutoencoderTransformer(encoder=encoder, decoder=decoder, max_iter=2,
                                random_state=0)
    ae.fit(digits[:257])
    assert ae.n_iter_ == 2


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
