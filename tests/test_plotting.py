"""Displays rendered headless (Agg) from fitted estimators."""

import matplotlib
import numpy as np
import pytest
import scipy.sparse as sp
from matplotlib.colors import to_rgba
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_replearn import AutoencoderTransformer
from sklearn_replearn.plotting import (
    ComponentsDisplay,
    FeatureMapsDisplay,
    LatentSpaceDisplay,
    LossCurveDisplay,
    ReconstructionDisplay,
    SamplesDisplay,
)

matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.data[:400] / 16.0, data.target[:400]


@pytest.fixture(scope="module")
def autoencoder(digits):
    X, _ = digits
    return AutoencoderTransformer(n_components=2, hidden_layer_sizes=(16,), max_iter=10,
                                  early_stopping=True, random_state=0,
                                  device="cpu").fit(X)


def shown_images(axes):
    """Images drawn on an array of Axes, in order."""
    return [image for axis in np.ravel(axes) for image in axis.get_images()]


def test_components_of_autoencoder_first_layer(autoencoder):
    display = ComponentsDisplay.from_estimator(autoencoder, n_cols=4)
    images = shown_images(display.ax_)
    assert display.ax_.shape == (4, 4)
    assert len(images) == 16  # one per first-layer unit
    assert images[0].get_array().shape == (8, 8)
    # One symmetric scale per filter around zero (0.5), on a diverging map, so
    # that the weights' signs read as such (issue 15).
    weights = autoencoder.components_[0].reshape(8, 8)
    np.testing.assert_allclose(images[0].get_array(),
                               0.5 + 0.5 * weights / np.abs(weights).max(), rtol=1e-6)
    assert images[0].get_cmap().name == "RdBu_r"
    assert images[0].get_clim() == (0.0, 1.0)
    assert display.figure_._suptitle.get_text() == "AutoencoderTransformer components"


def test_components_of_pca_and_max_components(digits):
    X, _ = digits
    pca = PCA(n_components=12).fit(X)
    display = ComponentsDisplay.from_estimator(pca, max_components=5)
    assert len(shown_images(display.ax_)) == 5


def test_components_of_conv_kernels(digits):
    X, _ = digits
    conv = AutoencoderTransformer(architecture="conv", image_shape=(1, 8, 8),
                                  hidden_layer_sizes=(6,), max_iter=1,
                                  device="cpu").fit(X)
    display = ComponentsDisplay.from_estimator(conv)
    images = shown_images(display.ax_)
    assert len(images) == 6 and images[0].get_array().shape == (3, 3)


def test_components_wrong_image_shape(autoencoder):
    message = r"image_shape=\(7, 7\) has 49 values per image"
    with pytest.raises(ValueError, match=message):
        ComponentsDisplay.from_estimator(autoencoder, image_shape=(7, 7))


def test_components_need_components_or_convolution(digits):
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(TypeError, match="no components_"):
        ComponentsDisplay.from_estimator(StandardScaler().fit(digits[0]))


def test_reconstructions_two_rows(autoencoder, digits):
    X, _ = digits
    display = ReconstructionDisplay.from_estimator(autoencoder, X, n_samples=6)
    assert display.ax_.shape == (2, 6)
    assert display.ax_[0, 0].get_ylabel() == "original"
    assert display.ax_[1, 0].get_ylabel() == "reconstructed"
    np.testing.assert_allclose(shown_images(display.ax_[0])[0].get_array(),
                               X[0].reshape(8, 8) / X[:6].max())


def test_reconstruction_needs_inverse_transform(digits):
    from sklearn.preprocessing import Normalizer

    with pytest.raises(TypeError, match="no inverse_transform"):
        ReconstructionDisplay.from_estimator(Normalizer().fit(digits[0]), digits[0])


def test_latent_space_colours_by_label(autoencoder, digits):
    X, y = digits
    display = LatentSpaceDisplay.from_estimator(autoencoder, X, y)
    assert display.scatter_.get_offsets().shape == (len(X), 2)
    assert display.ax_.get_xlabel() == "component 1"
    assert len(display.ax_.get_legend().get_texts()) == 10


def test_latent_space_projects_wide_codes(digits):
    X, y = digits
    pca = PCA(n_components=5).fit(X)
    display = LatentSpaceDisplay.from_estimator(pca, X, y)
    assert display.ax_.get_xlabel() == "PC 1 of the codes"
    with pytest.raises(ValueError, match="3 labels for 400 codes"):
        LatentSpaceDisplay(pca.transform(X), y[:3]).plot()


def test_latent_traversal_grid(autoencoder):
    display = SamplesDisplay.from_latent_traversal(autoencoder, n_steps=5)
    assert display.ax_.shape == (5, 5)
    assert len(shown_images(display.ax_)) == 25


def test_latent_traversal_needs_two_components(digits):
    wide = AutoencoderTransformer(n_components=3, max_iter=1, device="cpu")
    wide.fit(digits[0])
    with pytest.raises(ValueError, match="2-D latent space"):
        SamplesDisplay.from_latent_traversal(wide)


def test_samples_need_a_generative_model(autoencoder):
    with pytest.raises(TypeError, match="cannot generate samples"):
        SamplesDisplay.from_estimator(autoencoder)


def test_samples_from_array_with_rgb_shape():
    samples = np.random.RandomState(0).rand(4, 3 * 5 * 5)
    display = SamplesDisplay(samples, image_shape=(3, 5, 5), n_cols=2).plot()
    assert shown_images(display.ax_)[0].get_array().shape == (5, 5, 3)


def test_feature_maps_from_array_and_estimator_check():
    maps = np.random.RandomState(0).rand(6, 4, 4)
    display = FeatureMapsDisplay(maps).plot(n_cols=3)
    assert display.ax_.shape == (2, 3) and display.ax_[0, 1].get_title() == "1"
    with pytest.raises(ValueError, match=r"\(channels, height, width\)"):
        FeatureMapsDisplay(maps[0]).plot()


def test_loss_curve_with_validation(autoencoder):
    display = LossCurveDisplay.from_estimator(autoencoder)
    train, valid = display.lines_
    np.testing.assert_allclose(train.get_ydata(), autoencoder.loss_curve_)
    np.testing.assert_allclose(valid.get_ydata(),
                               [-s for s in autoencoder.validation_scores_])
    assert display.ax_.get_xlabel() == "epoch"


def test_displays_draw_on_given_axes(autoencoder, digits):
    figure, axes = plt.subplots(2, 3)
    display = ReconstructionDisplay.from_estimator(autoencoder, digits[0], n_samples=3,
                                                   ax=axes)
    assert display.figure_ is figure
    with pytest.raises(ValueError, match="ax has 6 Axes; 8 are needed"):
        ReconstructionDisplay.from_estimator(autoencoder, digits[0], n_samples=4,
                                             ax=axes)


@pytest.fixture(scope="module")
def photo():
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")[::8, ::8]  # a real photo, 54 x 80


@pytest.mark.slow
def test_feature_maps_of_a_cnn_layer(photo):
    from sklearn_replearn import PretrainedCNNFeatures

    cnn = PretrainedCNNFeatures("resnet18", weights=None, image_size=64, batch_size=1,
                                random_state=0, device="cpu").fit([photo])
    display = FeatureMapsDisplay.from_estimator(cnn, photo, layer="layer1",
                                                max_maps=12, n_cols=4)
    images = shown_images(display.ax_)
    assert display.ax_.shape == (3, 4) and len(images) == 12
    assert images[0].get_array().shape == (16, 16)  # 64 px / 4 after the stem
    assert display.figure_._suptitle.get_text() == "feature maps of layer1"
    kernels = ComponentsDisplay.from_estimator(cnn, max_components=8)
    assert shown_images(kernels.ax_)[0].get_array().shape == (7, 7, 3)  # RGB 7x7


def test_feature_maps_need_a_cnn(autoencoder, photo):
    with pytest.raises(TypeError, match="no feature_maps method"):
        FeatureMapsDisplay.from_estimator(autoencoder, photo)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_components_keep_their_scale_with_a_non_finite_weight(bad):
    # One NaN weight made the filter's peak NaN, so the filter was drawn
    # unscaled (a peak of 0.013 shown instead of 0.5); one inf weight made
    # the whole filter grey. The scale now comes from the finite weights.
    weights = np.random.RandomState(0).randn(2, 64) * 0.01
    weights[0, 5] = bad
    display = ComponentsDisplay(weights).plot()
    images = [np.asarray(image.get_array(), dtype=float)
              for image in shown_images(display.ax_)]
    for shown in images:
        finite = np.isfinite(shown) & (np.abs(shown - 0.5) < 0.5 + 1e-9)
        assert np.max(np.abs(shown[finite] - 0.5)) == pytest.approx(0.5)


def test_each_filter_is_scaled_by_its_largest_absolute_weight():
    # A filter whose peak is negative (an off-centre detector) is scaled by
    # |peak|: it is drawn within [0, 1], its peak at 0 (full blue), zero at
    # 0.5. Scaling by the largest signed weight instead would draw it far
    # below 0, outside the colormap (clipped: the filter's shape is lost).
    rng = np.random.RandomState(0)
    negative_peak = rng.uniform(-0.5, 0.2, 64)
    negative_peak[10] = -2.0
    positive_peak = rng.uniform(-0.1, 0.3, 64)
    positive_peak[20] = 0.6
    weights = np.stack([negative_peak, positive_peak])
    display = ComponentsDisplay(weights).plot()
    images = [np.asarray(image.get_array(), dtype=float).ravel()
              for image in shown_images(display.ax_)]
    assert len(images) == 2
    for shown, filter_ in zip(images, weights):
        assert 0 <= shown.min() and shown.max() <= 1
        np.testing.assert_allclose(
            shown, 0.5 + 0.5 * filter_ / np.abs(filter_).max(), rtol=1e-6)
    assert images[0][10] == pytest.approx(0.0)
    assert images[1][20] == pytest.approx(1.0)


@pytest.mark.parametrize("channels", [2, 16])
def test_latent_traversal_of_a_cnn_says_it_has_no_latent_space(photo, channels):
    # It said "Fit it with n_components=2", a parameter the CNN lacks (with
    # 16 features), or failed on the missing inverse_transform (with 2).
    from torch import nn

    from sklearn_replearn import PretrainedCNNFeatures

    backbone = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2), nn.ReLU())
    cnn = PretrainedCNNFeatures(backbone, weights=None, image_size=16,
                                device="cpu").fit([photo])
    with pytest.raises(TypeError, match="no decoder") as error:
        SamplesDisplay.from_latent_traversal(cnn)
    assert "n_components" not in str(error.value)
    assert "PretrainedCNNFeatures" in str(error.value)


@pytest.mark.parametrize("n_steps", [0, -1, 2.5, "3", True])
def test_latent_traversal_needs_a_positive_int_n_steps(autoencoder, n_steps):
    # n_steps=0 gave "Expected 2D array, got 1D array instead".
    with pytest.raises((TypeError, ValueError),
                       match=rf"n_steps must be an int >= 1; got {n_steps!r}"):
        SamplesDisplay.from_latent_traversal(autoencoder, n_steps=n_steps)


@pytest.mark.parametrize("limit", [np.nan, np.inf, 0.0, -1.0, "2"])
def test_latent_traversal_names_a_bad_limit(autoencoder, limit):
    # limit=nan gave an error that did not name limit.
    with pytest.raises((TypeError, ValueError),
                       match=rf"limit must be a finite number > 0; got {limit!r}"):
        SamplesDisplay.from_latent_traversal(autoencoder, limit=limit)


def test_latent_traversal_of_one_step_decodes_the_origin(autoencoder):
    display = SamplesDisplay.from_latent_traversal(autoencoder, n_steps=1)
    np.testing.assert_allclose(display.samples,
                               autoencoder.inverse_transform(np.zeros((1, 2))))


# ---------------- legends of 2-5 classes, non-square images, sparse X, grid sizes
@pytest.fixture(scope="module")
def X_small():
    X = load_digits().data[:200] / 16.0
    return X


def _small_autoencoder(X, **params):
    return AutoencoderTransformer(n_components=2, hidden_layer_sizes=(8,),
                                  max_iter=2, random_state=0, device="cpu",
                                  **params).fit(X)


@pytest.mark.usefixtures("one_torch_thread")
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


@pytest.mark.usefixtures("one_torch_thread")
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


@pytest.mark.usefixtures("one_torch_thread")
def test_components_use_the_estimators_image_shape():
    X = np.random.RandomState(0).rand(40, 64)
    ae = _small_autoencoder(X, image_shape=(1, 4, 16))
    display = ComponentsDisplay.from_estimator(ae)
    assert display.ax_.flat[0].get_images()[0].get_array().shape == (4, 16)


@pytest.mark.usefixtures("one_torch_thread")
def test_reconstructions_of_sparse_input(X_small):
    # The autoencoder and PCA transform sparse X; the display raised
    # IndexError from np.asarray(sparse)[:n_samples].
    X = sp.csr_matrix(X_small)
    pca = PCA(n_components=5).fit(X_small)
    display = ReconstructionDisplay.from_estimator(pca, X, n_samples=3)
    top = display.ax_[0, 0].get_images()[0].get_array()
    assert top.shape == (8, 8)
    assert np.ptp(top) > 0


@pytest.mark.usefixtures("one_torch_thread")
def test_latent_traversal_of_a_pipeline_is_drawn_or_clearly_refused(X_small):
    # A Pipeline ending in a 2-component autoencoder has inverse_transform,
    # yet the traversal said "this Pipeline has None components. Fit it with
    # n_components=2", which is false.
    pipe = make_pipeline(StandardScaler(), _small_autoencoder(X_small)).fit(X_small)
    display = SamplesDisplay.from_latent_traversal(pipe, n_steps=3)
    assert len(display.ax_.flat) == 9


@pytest.mark.usefixtures("one_torch_thread")
def test_latent_space_of_a_single_wide_code():
    # One sample, 5-D codes: PCA(n_components=2) raised "n_components=2 must
    # be between 0 and min(n_samples, n_features)=1 with svd_solver='full'".
    codes = np.random.RandomState(0).rand(1, 5)
    display = LatentSpaceDisplay(codes, ["a"]).plot()
    assert len(display.scatter_.get_offsets()) == 1


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("make", [
    lambda pca: ComponentsDisplay.from_estimator(pca, n_cols=0),
    lambda pca: ComponentsDisplay.from_estimator(pca, max_components=0),
])
def test_bad_grid_sizes_give_a_clear_value_error(X_small, make):
    # n_cols=0 raised ZeroDivisionError; max_components=0 raised numpy's
    # "cannot reshape array of size 0".
    pca = PCA(n_components=4).fit(X_small)
    with pytest.raises(ValueError, match="n_cols|max_components"):
        make(pca)


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


@pytest.mark.usefixtures("one_torch_thread")
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


@pytest.mark.usefixtures("one_torch_thread")
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
