"""Displays that make learned representations visible.

Read more in the :ref:`User Guide <guide-plotting>`.

They follow scikit-learn's Display convention: build one from a fitted
estimator with ``XDisplay.from_estimator(estimator, ...)`` (which also plots),
or from raw arrays with ``XDisplay(...)`` and ``.plot()``. After plotting, a
display has ``figure_`` and ``ax_`` (one Axes, or an array of Axes for image
grids). matplotlib is the optional ``plot`` extra and is imported only here,
when a display is plotted.
"""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from ._utils import check_image_shape, import_optional

__all__ = [
    "ComponentsDisplay",
    "FeatureMapsDisplay",
    "LatentSpaceDisplay",
    "LossCurveDisplay",
    "ReconstructionDisplay",
    "SamplesDisplay",
]


def _pyplot():
    return import_optional("matplotlib.pyplot", feature="Plotting", extra="plot",
                           package="matplotlib")


def _as_images(rows, image_shape, what):
    """Reshape flat rows to images ``(n, H, W)`` or ``(n, H, W, 3)`` for imshow.

    ``image_shape`` is ``(H, W)`` or ``(C, H, W)`` (C-order rows, as in
    ``images.reshape(n, -1)``); None means square single-channel images.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array of flat images; got shape "
                         f"{rows.shape}.")
    n_values = rows.shape[1]
    if image_shape is None:
        side = math.isqrt(n_values)
        if side * side != n_values:
            raise ValueError(
                f"{what} rows have {n_values} values, which is not a square image; "
                "pass image_shape=(height, width) or (channels, height, width)."
            )
        image_shape = (side, side)
    image_shape = check_image_shape(image_shape, n_values, what=what, allow_2d=True)
    if len(image_shape) == 2:
        return rows.reshape(-1, *image_shape)
    channels, height, width = image_shape
    images = rows.reshape(-1, channels, height, width)
    if channels == 1:
        return images[:, 0]
    if channels == 3:
        return images.transpose(0, 2, 3, 1)
    raise ValueError(
        f"image_shape={image_shape} has {channels} channels; images can be shown "
        "with 1 or 3 channels."
    )


def _normalized(images):
    """Scale each image to [0, 1] for display (weights have arbitrary scale)."""
    # Over the finite values: one NaN or inf weight (shown as a blank
    # pixel) must not take the rest of its image's scale with it.
    flat = _finite_or_nan(images.reshape(len(images), -1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN images
        low = np.nanmin(flat, axis=1).reshape(-1, *([1] * (images.ndim - 1)))
        high = np.nanmax(flat, axis=1).reshape(-1, *([1] * (images.ndim - 1)))
    low = np.where(np.isfinite(low), low, 0.0)
    high = np.where(np.isfinite(high), high, 0.0)
    return (images - low) / np.where(high > low, high - low, 1.0)


def _symmetric(images):
    """Map each single-channel image to [0, 1] with 0.5 at zero.

    Learned weights have a sign: with one symmetric scale per filter and a
    diverging colormap, positive and negative parts (an edge's two sides)
    read as such, and a filter near zero stays grey instead of being
    stretched to full contrast like its neighbours.
    """
    flat = np.abs(_finite_or_nan(images.reshape(len(images), -1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN images
        peak = np.nanmax(flat, axis=1).reshape(-1, *([1] * (images.ndim - 1)))
    peak = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0)
    return 0.5 + 0.5 * images / peak


def _finite_or_nan(values):
    """``values`` (float) with inf and -inf replaced by NaN."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _estimator_image_shape(estimator, n_values):
    """The estimator's ``image_shape`` when it describes rows of ``n_values``
    (an autoencoder fitted on flat images), else None."""
    shape = getattr(estimator, "image_shape", None)
    try:
        shape = tuple(int(size) for size in shape)
    except (TypeError, ValueError):
        return None
    if len(shape) in (2, 3) and min(shape) > 0 and math.prod(shape) == n_values:
        return shape
    return None


def _image_grid(images, *, n_cols, ax, cmap, titles=None, row_labels=None,
                n_rows=None):
    """Show images on a grid of axes; returns (figure, axes array)."""
    plt = _pyplot()
    n_images = len(images)
    if isinstance(n_cols, bool) or not isinstance(n_cols, Integral) or n_cols < 1:
        raise ValueError(f"n_cols must be a positive int; got {n_cols!r}.")
    if n_images == 0:
        raise ValueError("There are no images to show (max_components or "
                         "max_maps must be at least 1).")
    n_cols = min(n_cols, n_images) if n_rows is None else n_cols
    n_rows = n_rows or math.ceil(n_images / n_cols)
    if ax is None:
        figure, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                                    figsize=(1.2 * n_cols, 1.2 * n_rows + 0.3))
    else:
        axes = np.asarray(ax, dtype=object).reshape(-1)
        if axes.size < n_rows * n_cols:
            raise ValueError(f"ax has {axes.size} Axes; {n_rows * n_cols} are needed "
                             f"({n_rows} rows x {n_cols} columns).")
        axes = axes[: n_rows * n_cols].reshape(n_rows, n_cols)
        figure = axes[0, 0].figure
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index < n_images:
            # Images come scaled to [0, 1]: no per-image autoscaling on top.
            axis.imshow(images[index], cmap=cmap if images[index].ndim == 2 else None,
                        interpolation="nearest", vmin=0.0, vmax=1.0)
            if titles is not None:
                axis.set_title(titles[index], fontsize=7)
        else:
            axis.set_axis_off()
    if row_labels is not None:
        for axis, label in zip(axes[:, 0], row_labels):
            axis.set_ylabel(label)
    return figure, axes


class ComponentsDisplay:
    """Image grid of learned components: filters, atoms, kernels.

    Parameters
    ----------
    components : ndarray of shape (n_components, n_features)
        One flat image per component.
    image_shape : tuple of int, default=None
        ``(H, W)`` or ``(C, H, W)``; None for square single-channel images.
    title : str, default=None
        Figure title.

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : ndarray of matplotlib Axes
        One Axes per grid cell.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_replearn.plotting import ComponentsDisplay
    >>> pca = PCA(n_components=8).fit(load_digits().data)
    >>> display = ComponentsDisplay.from_estimator(pca)
    >>> display.ax_.shape
    (1, 8)
    """

    def __init__(self, components, *, image_shape=None, title=None):
        self.components = components
        self.image_shape = image_shape
        self.title = title

    @classmethod
    def from_estimator(cls, estimator, *, image_shape=None, max_components=64,
                       n_cols=8, ax=None, cmap="RdBu_r", title=None):
        """Plot the components of a fitted estimator.

        Works with anything that has ``components_`` (PCA, dictionary atoms,
        an autoencoder's first-layer weights) and with CNN feature extractors,
        whose first convolution's kernels are shown (RGB when they see 3
        channels).

        Parameters
        ----------
        estimator : fitted estimator
        image_shape : tuple of int, default=None
            Shape of one component as an image; inferred for square images and
            for CNN kernels.
        max_components : int, default=64
            Show at most this many (the first ones).
        n_cols : int, default=8
            Images per row.
        ax : array of matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        cmap : str, default="RdBu_r"
            A diverging colormap: each single-channel component is scaled
            symmetrically around zero (white), positive red, negative blue.
            RGB kernels are shown in colour, scaled to their range.
        title : str, default=None

        Returns
        -------
        display : ComponentsDisplay
        """
        check_is_fitted(estimator)
        if isinstance(max_components, bool) or not isinstance(
                max_components, Integral) or max_components < 1:
            raise ValueError(f"max_components must be a positive int; got "
                             f"{max_components!r}.")
        components, inferred_shape = _components_of(estimator)
        display = cls(components[:max_components],
                      image_shape=image_shape or inferred_shape
                      or _estimator_image_shape(estimator, components.shape[1]),
                      title=title or f"{type(estimator).__name__} components")
        return display.plot(n_cols=n_cols, ax=ax, cmap=cmap)

    def plot(self, *, n_cols=8, ax=None, cmap="RdBu_r"):
        """Draw the grid; returns self."""
        images = _as_images(self.components, self.image_shape, "components")
        images = _symmetric(images) if images.ndim == 3 else _normalized(images)
        self.figure_, self.ax_ = _image_grid(images, n_cols=n_cols, ax=ax, cmap=cmap)
        if self.title:
            self.figure_.suptitle(self.title)
        return self


def _components_of(estimator):
    """(flat components, image shape or None) of a fitted estimator."""
    try:
        components = estimator.components_
    except AttributeError:
        components = None
    if components is not None:
        return np.asarray(components), None
    kernels = _first_conv_kernels(estimator)
    if kernels is not None:
        n_out, n_in, height, width = kernels.shape
        if n_in == 3:
            return kernels.reshape(n_out, -1), (3, height, width)
        return kernels[:, 0].reshape(n_out, -1), (height, width)
    raise TypeError(
        f"{type(estimator).__name__} has no components_ and no convolution to take "
        "kernels from; ComponentsDisplay needs one of them (or build "
        "ComponentsDisplay(components, image_shape=...) from an array)."
    )


def _first_conv_kernels(estimator):
    """Weights (out, in, kh, kw) of the first Conv2d in an estimator's modules."""
    import torch

    candidates = [getattr(estimator, "module_", None), *vars(estimator).values()]
    for value in candidates:
        if isinstance(value, torch.nn.Module):
            for layer in value.modules():
                if isinstance(layer, torch.nn.Conv2d):
                    return layer.weight.detach().cpu().numpy()
    return None


class ReconstructionDisplay:
    """Originals (top row) above their reconstructions (bottom row).

    Parameters
    ----------
    originals, reconstructions : ndarray of shape (n_samples, n_features)
    image_shape : tuple of int, default=None
    title : str, default=None

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : ndarray of matplotlib Axes of shape (2, n_samples)
    """

    def __init__(self, originals, reconstructions, *, image_shape=None, title=None):
        self.originals = originals
        self.reconstructions = reconstructions
        self.image_shape = image_shape
        self.title = title

    @classmethod
    def from_estimator(cls, estimator, X, *, n_samples=10, image_shape=None, ax=None,
                       cmap="gray", title=None):
        """Reconstruct the first ``n_samples`` rows of X and plot them.

        The estimator needs ``transform`` and ``inverse_transform``.
        """
        check_is_fitted(estimator)
        if not hasattr(estimator, "inverse_transform"):
            raise TypeError(
                f"{type(estimator).__name__} has no inverse_transform, so it cannot "
                "reconstruct; use an autoencoder, VAE, PCA or dictionary learner."
            )
        X = X[:n_samples]
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        reconstructions = estimator.inverse_transform(estimator.transform(X))
        display = cls(X, reconstructions, image_shape=image_shape or
                      _estimator_image_shape(estimator, X.shape[1]),
                      title=title or f"{type(estimator).__name__} reconstructions")
        return display.plot(ax=ax, cmap=cmap)

    def plot(self, *, ax=None, cmap="gray"):
        """Draw originals above reconstructions; returns self."""
        originals = _as_images(self.originals, self.image_shape, "originals")
        reconstructions = _as_images(self.reconstructions, self.image_shape,
                                     "reconstructions")
        if len(originals) != len(reconstructions):
            raise ValueError(f"{len(originals)} originals but {len(reconstructions)} "
                             "reconstructions; pass one reconstruction per original.")
        # Same color scale for both rows: clipping shows what the model gets wrong.
        low, high = originals.min(), originals.max()
        scaled = [np.clip((images - low) / (high - low or 1.0), 0, 1)
                  for images in (originals, reconstructions)]
        self.figure_, self.ax_ = _image_grid(
            np.concatenate(scaled), n_cols=len(originals), n_rows=2, ax=ax, cmap=cmap,
            row_labels=["original", "reconstructed"],
        )
        if self.title:
            self.figure_.suptitle(self.title)
        return self


class LatentSpaceDisplay:
    """2-D scatter of codes, coloured by label.

    Codes wider than 2 are projected on their first two principal components
    (the axis labels say so).

    Parameters
    ----------
    codes : ndarray of shape (n_samples, n_components)
    labels : array-like of shape (n_samples,), default=None
    title : str, default=None

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : matplotlib Axes
    scatter_ : matplotlib PathCollection
    """

    def __init__(self, codes, labels=None, *, title=None):
        self.codes = codes
        self.labels = labels
        self.title = title

    @classmethod
    def from_estimator(cls, estimator, X, y=None, *, ax=None, title=None):
        """Encode X with ``estimator.transform`` and scatter the codes."""
        check_is_fitted(estimator)
        title = title or f"{type(estimator).__name__} latent space"
        return cls(estimator.transform(X), y, title=title).plot(ax=ax)

    def plot(self, *, ax=None, cmap="tab10", size=8):
        """Draw the scatter; returns self."""
        plt = _pyplot()
        codes = np.asarray(self.codes, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] < 1:
            raise ValueError(f"codes must be 2-D (n_samples, n_components); got "
                             f"shape {codes.shape}.")
        if codes.shape[1] == 1:
            points, names = np.column_stack([codes[:, 0], np.zeros(len(codes))]), (
                "component 1", "")
        elif codes.shape[1] == 2 or len(codes) < 3:
            # (PCA of fewer than three codes has no second direction.)
            points, names = codes[:, :2], ("component 1", "component 2")
        else:
            from sklearn.decomposition import PCA

            points = PCA(n_components=2).fit_transform(codes)
            names = ("PC 1 of the codes", "PC 2 of the codes")
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4.5))
        self.ax_, self.figure_ = ax, ax.figure
        colors = None
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if len(labels) != len(points):
                raise ValueError(f"{len(labels)} labels for {len(points)} codes; pass "
                                 "one label per sample.")
            _, colors = np.unique(labels, return_inverse=True)
        self.scatter_ = ax.scatter(points[:, 0], points[:, 1], c=colors, cmap=cmap,
                                   s=size)
        if self.labels is not None:
            classes = np.unique(np.asarray(self.labels))
            # One handle per class index (num=len(classes) let matplotlib
            # pick "nice" levels such as 0, 0.5, 1: wrong colours for 2-5
            # classes).
            handles = self.scatter_.legend_elements(num=None)[0]
            ax.legend(handles, [str(c) for c in classes], fontsize=7, markerscale=0.8,
                      loc="best")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        if self.title:
            ax.set_title(self.title)
        return self


class SamplesDisplay:
    """Generated samples (a VAE's), or a latent traversal grid.

    Parameters
    ----------
    samples : ndarray of shape (n_samples, n_features)
    image_shape : tuple of int, default=None
    n_cols : int, default=8
        Images per row (the grid size for a traversal).
    title : str, default=None

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : ndarray of matplotlib Axes
    """

    def __init__(self, samples, *, image_shape=None, n_cols=8, title=None):
        self.samples = samples
        self.image_shape = image_shape
        self.n_cols = n_cols
        self.title = title

    @classmethod
    def from_estimator(cls, estimator, *, n_samples=32, image_shape=None,
                       random_state=None, n_cols=8, ax=None, cmap="gray", title=None):
        """Draw ``n_samples`` new samples with ``estimator.sample`` and plot them."""
        check_is_fitted(estimator)
        if not hasattr(estimator, "sample"):
            raise TypeError(f"{type(estimator).__name__} cannot generate samples (no "
                            "sample method); use VAETransformer.")
        samples = estimator.sample(n_samples, random_state=random_state)
        image_shape = image_shape or _estimator_image_shape(estimator,
                                                            samples.shape[1])
        return cls(samples, image_shape=image_shape, n_cols=n_cols,
                   title=title or f"{type(estimator).__name__} samples").plot(
            ax=ax, cmap=cmap)

    @classmethod
    def from_latent_traversal(cls, estimator, *, n_steps=10, limit=2.5,
                              image_shape=None, ax=None, cmap="gray", title=None):
        """Decode an ``n_steps`` x ``n_steps`` grid of a 2-D latent space.

        The grid spans ``[-limit, limit]`` on both latent axes (in prior
        standard deviations for a VAE; ``n_steps=1`` decodes the origin) and
        is decoded with ``estimator.inverse_transform``.
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, Integral) or (
                n_steps < 1):
            raise ValueError(f"n_steps must be an int >= 1; got {n_steps!r}. Pass "
                             "the number of grid points per latent axis, e.g. 10.")
        if isinstance(limit, bool) or not isinstance(limit, Real) or not (
                math.isfinite(limit) and limit > 0):
            raise ValueError(f"limit must be a finite number > 0; got {limit!r}. "
                             "Pass the grid's half-width in latent units, e.g. 2.5.")
        check_is_fitted(estimator)
        # A Pipeline's latent space is its last step's (decoded through the
        # whole pipeline's inverse_transform).
        final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        width = getattr(final, "_n_features_out", None)
        if width is None or not hasattr(final, "inverse_transform"):
            raise TypeError(
                f"{type(final).__name__} has no decoder, so no latent space to "
                "traverse (its features cannot be turned back into samples); pass "
                "a fitted autoencoder, VAE or DictionaryLearner (or a Pipeline "
                "ending in one).")
        if width != 2:
            raise ValueError(f"A latent traversal needs a 2-D latent space; this "
                             f"{type(estimator).__name__} has {width} components. "
                             "Fit it with n_components=2.")
        axis = np.linspace(-limit, limit, n_steps) if n_steps > 1 else np.zeros(1)
        # Row i is the i-th value of the second latent, top = largest.
        grid = np.array([[first, second] for second in axis[::-1] for first in axis])
        samples = estimator.inverse_transform(grid)
        image_shape = image_shape or _estimator_image_shape(final, samples.shape[1])
        return cls(samples, image_shape=image_shape, n_cols=n_steps,
                   title=title or "latent traversal").plot(ax=ax, cmap=cmap)

    def plot(self, *, ax=None, cmap="gray"):
        """Draw the samples; returns self."""
        images = _as_images(self.samples, self.image_shape, "samples")
        low, high = float(images.min()), float(images.max())
        images = (images - low) / (high - low or 1.0)
        self.figure_, self.ax_ = _image_grid(images, n_cols=self.n_cols, ax=ax,
                                             cmap=cmap)
        if self.title:
            self.figure_.suptitle(self.title)
        return self


def _one_image(image):
    """``image``, refused with a clear error when it is a batch of images;
    one image given as nested lists becomes an array."""
    if isinstance(image, list | tuple):
        try:
            array = np.asarray(image)
        except (ValueError, TypeError):  # ragged: a list of images
            array = None
        if array is None or array.ndim not in (2, 3) or array.dtype.kind not in "biuf":
            raise ValueError(
                f"image is a list of {len(image)} item"
                f"{'s' if len(image) != 1 else ''}; FeatureMapsDisplay shows "
                "the maps of one image: pass one of them (e.g. images[0]), as an "
                "array, a PIL image or a file path."
            )
        return array
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) == 4:
        count = f"{shape[0]} image{'s' if shape[0] != 1 else ''}"
        raise ValueError(
            f"image has shape {tuple(shape)}, a batch of {count}; "
            "FeatureMapsDisplay shows the maps of one image: pass one, e.g. "
            "images[0] (shape (H, W, C) or (C, H, W))."
        )
    return image


class FeatureMapsDisplay:
    """A CNN layer's feature maps for one image: where each channel fires.

    Parameters
    ----------
    feature_maps : ndarray of shape (n_channels, height, width)
        The maps of one image.
    title : str, default=None

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : ndarray of matplotlib Axes
    """

    def __init__(self, feature_maps, *, title=None):
        self.feature_maps = feature_maps
        self.title = title

    @classmethod
    def from_estimator(cls, estimator, image, *, layer=None, max_maps=32, n_cols=8,
                       ax=None, cmap="viridis", title=None):
        """Compute the feature maps of ``image`` at ``layer`` and plot them.

        ``estimator`` is a fitted ``PretrainedCNNFeatures``; ``image`` is one
        image in any form it accepts (array of shape (H, W), (H, W, C) or
        (C, H, W), PIL image, file path); ``max_maps`` (at least 1) is the
        number of channels shown, the first ones.
        """
        if (isinstance(max_maps, bool) or not isinstance(max_maps, Integral)
                or max_maps < 1):
            raise ValueError(f"max_maps must be a positive int (the number of "
                             f"channels to show); got {max_maps!r}.")
        check_is_fitted(estimator)
        if not hasattr(estimator, "feature_maps"):
            raise TypeError(f"{type(estimator).__name__} has no feature_maps method; "
                            "use PretrainedCNNFeatures.")
        maps = np.asarray(estimator.feature_maps([_one_image(image)],
                                                 layer=layer))[0]
        layer_name = layer or getattr(estimator, "layer", None) or "layer"
        display = cls(maps[:max_maps], title=title or f"feature maps of {layer_name}")
        return display.plot(n_cols=n_cols, ax=ax, cmap=cmap)

    def plot(self, *, n_cols=8, ax=None, cmap="viridis"):
        """Draw one panel per channel; returns self."""
        maps = np.asarray(self.feature_maps, dtype=np.float64)
        if maps.ndim != 3:
            raise ValueError(f"feature_maps must have shape (channels, height, width); "
                             f"got {maps.shape}.")
        self.figure_, self.ax_ = _image_grid(
            _normalized(maps), n_cols=n_cols, ax=ax, cmap=cmap,
            titles=[str(index) for index in range(len(maps))],
        )
        if self.title:
            self.figure_.suptitle(self.title)
        return self


class LossCurveDisplay:
    """Training (and validation) loss per epoch.

    Parameters
    ----------
    loss_curve : sequence of float
        Training loss of each epoch.
    validation_loss : sequence of float, default=None
        Validation loss of each epoch (early stopping).
    title : str, default=None

    Attributes
    ----------
    figure_ : matplotlib Figure
    ax_ : matplotlib Axes
    lines_ : list of matplotlib Line2D
    """

    def __init__(self, loss_curve, validation_loss=None, *, title=None):
        self.loss_curve = loss_curve
        self.validation_loss = validation_loss
        self.title = title

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, title=None):
        """Plot ``loss_curve_`` and, with early stopping, the validation loss.

        The validation loss is minus ``validation_scores_``.
        """
        check_is_fitted(estimator)
        if not hasattr(estimator, "loss_curve_"):
            raise TypeError(f"{type(estimator).__name__} has no loss_curve_; it was "
                            "not trained by epochs.")
        scores = getattr(estimator, "validation_scores_", None)
        validation = None if scores is None else [-score for score in scores]
        return cls(estimator.loss_curve_, validation,
                   title=title or f"{type(estimator).__name__} training").plot(ax=ax)

    def plot(self, *, ax=None, log_scale=False):
        """Draw the curves; returns self."""
        plt = _pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        self.ax_, self.figure_ = ax, ax.figure
        epochs = np.arange(1, len(self.loss_curve) + 1)
        self.lines_ = ax.plot(epochs, self.loss_curve, label="training loss")
        if self.validation_loss is not None:
            self.lines_ += ax.plot(np.arange(1, len(self.validation_loss) + 1),
                                   self.validation_loss, label="validation loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        if log_scale:
            ax.set_yscale("log")
        ax.legend()
        if self.title:
            ax.set_title(self.title)
        return self
