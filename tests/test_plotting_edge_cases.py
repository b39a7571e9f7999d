"""The displays and the extract command on inputs their authors had not
tried: legends of 2-5 classes, estimators fitted on non-square images, sparse
X, a Pipeline, one wide code, bad grid sizes, a 16-bit PNG. Each test failed
before its fix (an independent review's findings, 2026-11-27).
"""

import matplotlib
import numpy as np
import pytest
import scipy.sparse as sp
from matplotlib.colors import to_rgba
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_replearn import AutoencoderTransformer
from sklearn_replearn._extract import main as extract_main
from sklearn_replearn.plotting import (
    ComponentsDisplay,
    LatentSpaceDisplay,
    ReconstructionDisplay,
    SamplesDisplay,
)

matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--backbone", "resnet18", "--weights", "none", "--random-state", "0",
        "--image-size", "32", "--batch-size", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data[:200] / 16.0
    return X


def _small_autoencoder(X, **params):
    return AutoencoderTransformer(n_components=2, hidden_layer_sizes=(8,),
                                  max_iter=2, random_state=0, device="cpu",
                                  **params).fit(X)


@pytest.mark.parametrize("n_classes", [2, 3, 4, 5])
def test_latent_legend_colours_match_the_points_of_each_class(n_classes):
    # legend_elements(num=len(classes)) picks levels like 0, 0.5, 1 (2
    # classes) or 0, 0.8, ..., 4.0 (5 classes): legend entries get colours no
    # point has. Fix: LatentSpaceDisplay.plot, legend_elements(num=None).
    labels = np.array([f"class{i % n_classes}" for i in range(4 * n_classes)])
    codes = np.random.RandomState(0).rand(len(labels), 2)
    display = LatentSpaceDisplay(codes, labels).plot()
    display.figure_.canvas.draw()
    legend = display.ax_.get_legend()
    texts = [text.get_text() for text in legend.get_texts()]
    assert texts == [f"class{i}" for i in range(n_classes)]
    point_colours = display.scatter_.get_facecolors()
    for handle, text in zip(legend.legend_handles, texts):
        first = np.flatnonzero(labels == text)[0]
        np.testing.assert_allclose(to_rgba(handle.get_markerfacecolor()),
                                   point_colours[first], atol=1e-6,
                                   err_msg=f"legend colour of {text}")


def test_reconstructions_use_the_estimators_image_shape():
    # 4 x 16 images hold 64 values, a square number: with image_shape=None the
    # display silently shows them as scrambled 8 x 8 images although the
    # estimator knows image_shape=(1, 4, 16).
    X = np.random.RandomState(0).rand(40, 64)
    ae = _small_autoencoder(X, image_shape=(1, 4, 16))
    display = ReconstructionDisplay.from_estimator(ae, X, n_samples=2)
    shapes = {image.get_array().shape for axis in display.ax_.flat
              for image in axis.get_images()}
    assert shapes == {(4, 16)}


def test_components_use_the_estimators_image_shape():
    X = np.random.RandomState(0).rand(40, 64)
    ae = _small_autoencoder(X, image_shape=(1, 4, 16))
    display = ComponentsDisplay.from_estimator(ae)
    assert display.ax_.flat[0].get_images()[0].get_array().shape == (4, 16)


def test_reconstructions_of_sparse_input(digits):
    # The autoencoder and PCA transform sparse X; the display raised
    # IndexError from np.asarray(sparse)[:n_samples].
    X = sp.csr_matrix(digits)
    pca = PCA(n_components=5).fit(digits)
    display = ReconstructionDisplay.from_estimator(pca, X, n_samples=3)
    top = display.ax_[0, 0].get_images()[0].get_array()
    assert top.shape == (8, 8)
    assert np.ptp(top) > 0


def test_latent_traversal_of_a_pipeline_is_drawn_or_clearly_refused(digits):
    # A Pipeline ending in a 2-component autoencoder has inverse_transform,
    # yet the traversal said "this Pipeline has None components. Fit it with
    # n_components=2", which is false.
    pipe = make_pipeline(StandardScaler(), _small_autoencoder(digits)).fit(digits)
    display = SamplesDisplay.from_latent_traversal(pipe, n_steps=3)
    assert len(display.ax_.flat) == 9


def test_latent_space_of_a_single_wide_code():
    # One sample, 5-D codes: PCA(n_components=2) raised "n_components=2 must
    # be between 0 and min(n_samples, n_features)=1 with svd_solver='full'".
    codes = np.random.RandomState(0).rand(1, 5)
    display = LatentSpaceDisplay(codes, ["a"]).plot()
    assert len(display.scatter_.get_offsets()) == 1


@pytest.mark.parametrize("make", [
    lambda pca: ComponentsDisplay.from_estimator(pca, n_cols=0),
    lambda pca: ComponentsDisplay.from_estimator(pca, max_components=0),
])
def test_bad_grid_sizes_give_a_clear_value_error(digits, make):
    # n_cols=0 raised ZeroDivisionError; max_components=0 raised numpy's
    # "cannot reshape array of size 0".
    pca = PCA(n_components=4).fit(digits)
    with pytest.raises(ValueError, match="n_cols|max_components"):
        make(pca)


def _status(argv):
    """Exit status of the extract command (it exits through argparse on errors)."""
    try:
        return extract_main(argv)
    except SystemExit as exc:
        return exc.code


def test_extract_names_the_file_of_a_16_bit_png_and_can_skip_it(tmp_path, capsys):
    # A 16-bit PNG failed the whole run with "X[1] is a PIL image in mode
    # 'I;16' ...": no path named, and --skip-unreadable did not skip it.
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (20, 24, 3), np.uint8)).save(folder / "a.png")
    deep = folder / "b16.png"
    Image.fromarray((rng.rand(20, 24) * 60000).astype(np.uint16)).save(deep)
    assert Image.open(deep).mode == "I;16"
    out = tmp_path / "features.npy"
    assert _status([str(folder), *FAST, "--out", str(out)]) != 0
    assert "b16.png" in capsys.readouterr().err
    assert _status([str(folder), *FAST, "--skip-unreadable", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 512)


# ------------------------------------------- FeatureMapsDisplay (issue 21)
@pytest.fixture(scope="module")
def cnn_features():
    import torch
    from torch import nn

    from sklearn_replearn import PretrainedCNNFeatures

    with torch.random.fork_rng():
        torch.manual_seed(0)
        cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    images = np.random.RandomState(0).randint(0, 256, (3, 16, 16, 3), np.uint8)
    features = PretrainedCNNFeatures(cnn, weights=None, image_size=8, layer="1",
                                     device="cpu").fit(images)
    return features, images


@pytest.mark.parametrize("max_maps", [0, -1, 2.5, True])
def test_feature_maps_max_maps_below_one_is_a_clear_error(cnn_features, max_maps):
    # max_maps=0 gave numpy's "cannot reshape array of size 0", -1 silently
    # dropped the last map, 2.5 gave "slice indices must be integers".
    from sklearn_replearn.plotting import FeatureMapsDisplay

    features, images = cnn_features
    with pytest.raises(ValueError, match=rf"max_maps must be a positive int.*got "
                       rf"{max_maps!r}"):
        FeatureMapsDisplay.from_estimator(features, images[0], max_maps=max_maps)
    display = FeatureMapsDisplay.from_estimator(features, images[0], max_maps=1)
    assert display.feature_maps.shape == (1, 8, 8)


def test_feature_maps_of_a_batch_ask_for_one_image(cnn_features):
    # A batch got scikit-learn's "Found array with dim 5 ... dim <= 2".
    from sklearn_replearn.plotting import FeatureMapsDisplay

    features, images = cnn_features
    for batch, match in [
            (images, r"shape \(3, 16, 16, 3\).*batch of 3 images.*images\[0\]"),
            (images[:1], r"shape \(1, 16, 16, 3\).*batch of 1 image.*images\[0\]"),
            (list(images[:2]), r"list of 2 items.*images\[0\]")]:
        with pytest.raises(ValueError, match=match) as info:
            FeatureMapsDisplay.from_estimator(features, batch)
        assert "dim <= 2" not in str(info.value)
    # One image as nested lists is one image.
    display = FeatureMapsDisplay.from_estimator(features, images[0].tolist())
    np.testing.assert_array_equal(
        display.feature_maps, FeatureMapsDisplay.from_estimator(
            features, images[0]).feature_maps)
