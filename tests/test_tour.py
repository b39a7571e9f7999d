"""The tour (``python -m sklearn_replearn``) in its fast mode."""

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from sklearn_replearn._tour import (
    CNN_FEATURE_MAPS_LAYER,
    run_tour,
    write_figures,
)
from sklearn_replearn._tour_cli import main
from sklearn_replearn.datasets import filter_localisation, load_patches

CNN = "PretrainedCNNFeatures (trained here)"


# The tour itself (the quick_tour fixture, the command line, the patch tour)
# runs for seconds and is marked slow; the argument and data checks are quick.
@pytest.fixture(scope="module")
def quick_tour():
    return run_tour(n_components=8, quick=True)


@pytest.mark.slow
def test_tour_measures_every_model(quick_tour):
    rows, X_test, _ = quick_tour
    by_model = {row["model"]: row for row in rows}
    assert set(by_model) == {
        "raw pixels", "PCA", "AutoencoderTransformer", "VAETransformer",
        "DictionaryLearner", "DictionaryLearner (supervised)", CNN,
    }
    assert by_model["raw pixels"]["reconstruction_mse"] is None
    assert by_model[CNN]["reconstruction_mse"] is None  # not invertible
    # Error of predicting every digit by the mean digit: each model must do better.
    mean_digit_error = np.mean((X_test - X_test.mean(axis=0)) ** 2)
    for name, row in by_model.items():
        assert row["accuracy"] > 0.8, (name, row)
        assert row["fit_seconds"] > 0
        if name not in ("raw pixels", CNN):
            assert 0 < row["reconstruction_mse"] < 0.7 * mean_digit_error, (name, row)


def _roughness(kernels):
    """Mean squared difference of neighbouring weights over twice their variance.

    About 1 for independent random weights, lower for smooth kernels.
    """
    kernels = kernels - kernels.mean(axis=(1, 2), keepdims=True)
    height, width = kernels.shape[1:]
    squared = ((np.diff(kernels, axis=1) ** 2).sum(axis=(1, 2))
               + (np.diff(kernels, axis=2) ** 2).sum(axis=(1, 2)))
    mean_squared = squared / ((height - 1) * width + height * (width - 1))
    return float(np.mean(mean_squared / (2 * kernels.var(axis=(1, 2)))))


@pytest.mark.slow
def test_tour_cnn_is_trained_from_its_random_initialisation(quick_tour):
    """The CNN's kernels are learned: smoother than the random ones they left."""
    rows, X_test, _ = quick_tour
    cnn = {row["model"]: row for row in rows}[CNN]["estimator"]
    initial = cnn.backbone[0].weight.detach().numpy()[:, 0]
    trained = cnn.model_[0].weight.detach().numpy()[:, 0]
    # Measured 1.07 -> 0.44 in the quick run (10 epochs), 0.32 in the full one.
    assert _roughness(initial) > 0.9
    assert _roughness(trained) < 0.75 * _roughness(initial)
    assert cnn.fine_tuned_blocks_ == ["0", "3"]
    maps = cnn.feature_maps(X_test[:2].reshape(-1, 8, 8),
                            layer=CNN_FEATURE_MAPS_LAYER)
    assert maps.shape == (2, 16, 16, 16)


@pytest.mark.slow
def test_tour_writes_figures(quick_tour, tmp_path):
    rows, X_test, y_test = quick_tour
    paths = write_figures(rows, X_test, y_test, tmp_path)
    names = {path.name for path in paths}
    assert {"components_pca.png", "reconstructions_autoencodertransformer.png",
            "latent_autoencodertransformer.png",
            "loss_autoencodertransformer.png", "samples_vaetransformer.png",
            "components_dictionarylearner_supervised.png",
            "kernels_pretrainedcnnfeatures_trained_here.png",
            "feature_maps_pretrainedcnnfeatures_trained_here.png"} <= names
    image = matplotlib.image.imread(tmp_path / "reconstructions_pca.png")
    assert image.shape[1] > image.shape[0] > 50  # a wide two-row grid


@pytest.mark.slow
def test_command_line_prints_the_table():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_replearn", "--quick", "--n-components", "4"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    table = result.stdout.splitlines()
    assert table[0].startswith("| model (n_components=4)")
    assert any(line.startswith("| AutoencoderTransformer |") for line in table)
    assert "[1/" in result.stderr  # progress lines go to stderr


def test_command_line_rejects_bad_arguments_before_loading_torch():
    # A fresh interpreter: the wrong argument is answered before torch loads.
    code = ("import sys\n"
            "from sklearn_replearn.__main__ import main\n"
            "try:\n"
            "    main(['--n-components', '0'])\n"
            "except SystemExit as stop:\n"
            "    print('exit', stop.code, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120)
    assert "--n-components must be >= 1, got 0" in result.stderr
    assert result.stdout.split() == ["exit", "2", "False"]


@pytest.mark.slow
def test_tour_uses_its_random_state(quick_tour):
    """Issue 14.11: another random_state changes the split and the models."""
    rows, X_test, _ = quick_tour
    other_rows, other_X_test, _ = run_tour(n_components=8, quick=True,
                                           random_state=1)
    assert not np.array_equal(X_test, other_X_test)
    assert ([row["accuracy"] for row in rows]
            != [row["accuracy"] for row in other_rows])


def test_patches_are_whitened_and_split_by_image_halves():
    X_train, X_test, to_pixels = load_patches(8, 400, images=("china", "camera"))
    assert X_train.shape == (800, 64) and X_test.shape == (200, 64)
    assert X_train.dtype == np.float32
    # Whitened: unit variance overall, and a flattened spectrum (measured: the
    # largest variance 4.4x the median one, against 58x in pixels; the
    # regularised whitening leaves the smallest ones damped).
    assert np.std(X_train) == pytest.approx(1.0, rel=1e-3)

    def spread(rows):
        eigenvalues = np.linalg.eigvalsh(np.cov(rows.T))
        return eigenvalues[-1] / np.median(eigenvalues)

    assert spread(X_train) < 6 and spread(to_pixels(X_train)) > 30
    # Back in pixels, patches are mean-free and vary like image patches.
    pixels = to_pixels(X_test)
    np.testing.assert_allclose(pixels.mean(axis=1), 0, atol=1e-6)
    assert 1e-4 < pixels.var() < 0.1
    # The seed moves the patches; the same seed gives the same ones.
    again, _, _ = load_patches(8, 400, images=("china", "camera"))
    other, _, _ = load_patches(8, 400, images=("china", "camera"), random_state=1)
    np.testing.assert_array_equal(again, X_train)
    assert not np.allclose(other, X_train)


def test_load_patches_rejects_too_large_patches():
    with pytest.raises(ValueError, match="too small for 200x200 patches"):
        load_patches(200, 10, images=("camera",))


@pytest.mark.slow
def test_patch_tour_command_line(tmp_path, capsys):
    """``--data patches``: the table, with filter localisation, and figures."""
    assert main(["--data", "patches", "--quick", "--n-components", "16",
                 "--plot", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| model (16 filters, 12x12 whitened patches)")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in table[2:]}
    assert set(rows) == {"random filters (reference)",
                         "AutoencoderTransformer (sparsity=0)",
                         "AutoencoderTransformer (sparsity=1)",
                         "DictionaryLearner"}
    assert 0.3 < float(rows["random filters (reference)"][2]) < 0.4
    for name in ("AutoencoderTransformer (sparsity=1)", "DictionaryLearner"):
        assert 0 < float(rows[name][1]) < 1  # held-out error below the variance
    names = {path.name for path in tmp_path.iterdir()}
    assert {"patches_components_autoencodertransformer_sparsity_1.png",
            "patches_components_dictionarylearner.png",
            "patches_reconstructions_dictionarylearner.png"} <= names
    image = matplotlib.image.imread(
        tmp_path / "patches_components_autoencodertransformer_sparsity_1.png")
    assert image.shape[1] > image.shape[0] > 50


def test_filter_localisation_needs_matching_shapes():
    with pytest.raises(ValueError, match=r"shape \(n_filters, 9\)"):
        filter_localisation(np.zeros((2, 10)), (3, 3))
    with pytest.raises(ValueError, match="window must be between 1 and 3"):
        filter_localisation(np.zeros((2, 9)), (3, 3), window=4)


@pytest.mark.parametrize("data, runner", [("digits", "run_tour"),
                                          ("patches", "run_patch_tour")])
def test_command_line_passes_its_random_state_to_the_tour(monkeypatch, data,
                                                         runner):
    """``python -m sklearn_replearn --random-state N`` reaches the tour."""
    import inspect

    import sklearn_replearn._tour as tour
    from sklearn_replearn.__main__ import main as command_line

    seen = []

    class Stop(Exception):
        pass

    real = getattr(tour, runner)

    def recording(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        seen.append(bound.arguments["random_state"])
        raise Stop  # the seed is what is checked here; the tour is not run

    monkeypatch.setattr(tour, runner, recording)
    for seed in (1, 7):
        with pytest.raises(Stop):
            command_line(["--data", data, "--quick", "--random-state", str(seed)])
    with pytest.raises(Stop):
        command_line(["--data", data, "--quick"])
    assert seen == [1, 7, 0]
