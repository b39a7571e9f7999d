"""The tour (``python -m sklearn_replearn``) in its fast mode."""

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from sklearn_replearn._tour import run_tour, write_figures


@pytest.fixture(scope="module")
def quick_tour():
    return run_tour(n_components=8, quick=True)


def test_tour_measures_every_model(quick_tour):
    rows, X_test, _ = quick_tour
    by_model = {row["model"]: row for row in rows}
    assert set(by_model) == {
        "raw pixels", "PCA", "AutoencoderTransformer", "VAETransformer",
        "DictionaryLearner", "DictionaryLearner (supervised)",
    }
    assert by_model["raw pixels"]["reconstruction_mse"] is None
    # Error of predicting every digit by the mean digit: each model must do better.
    mean_digit_error = np.mean((X_test - X_test.mean(axis=0)) ** 2)
    for name, row in by_model.items():
        assert row["accuracy"] > 0.8, (name, row)
        assert row["fit_seconds"] > 0
        if name != "raw pixels":
            assert 0 < row["reconstruction_mse"] < 0.7 * mean_digit_error, (name, row)


def test_tour_writes_figures(quick_tour, tmp_path):
    rows, X_test, y_test = quick_tour
    paths = write_figures(rows, X_test, y_test, tmp_path)
    names = {path.name for path in paths}
    assert {"components_pca.png", "reconstructions_autoencodertransformer.png",
            "latent_autoencodertransformer.png",
            "loss_autoencodertransformer.png", "samples_vaetransformer.png",
            "components_dictionarylearner_supervised.png"} <= names
    image = matplotlib.image.imread(tmp_path / "reconstructions_pca.png")
    assert image.shape[1] > image.shape[0] > 50  # a wide two-row grid


def test_command_line_prints_the_table():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_replearn", "--quick", "--n-components", "4"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    table = result.stdout.splitlines()
    assert table[0].startswith("| model (n_components=4)")
    assert any(line.startswith("| AutoencoderTransformer |") for line in table)
    assert "[1/" in result.stderr  # progress lines go to stderr


def test_command_line_rejects_bad_arguments():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_replearn", "--n-components", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "--n-components must be >= 1" in result.stderr


def test_tour_uses_its_random_state(quick_tour):
    """Issue 14.11: another random_state changes the split and the models."""
    rows, X_test, _ = quick_tour
    other_rows, other_X_test, _ = run_tour(n_components=8, quick=True,
                                           random_state=1)
    assert not np.array_equal(X_test, other_X_test)
    assert ([row["accuracy"] for row in rows]
            != [row["accuracy"] for row in other_rows])
