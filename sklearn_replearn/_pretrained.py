"""PretrainedCNNFeatures: transfer-learning features from torchvision backbones."""

import difflib
import os
import pickle
import re
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from copy import deepcopy
from numbers import Integral, Real
from urllib.parse import urlparse

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ArrayImages,
    ItemImages,
    LoadFailure,
    Preprocessing,
    as_image_set,
    is_image_list,
    stack_prepared,
)
from ._inference import fold_batch_norms
from .base import BaseRepresentation
from .utils import iter_row_batches, seeded, to_numpy

__all__ = ["PretrainedCNNFeatures"]

_WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
# torchvision's DenseNet checkpoints use the old key names "norm.1", "conv.2", ...
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean"
    r"|running_var))$"
)


class PretrainedCNNFeatures(BaseRepresentation):
    """Features of a pretrained CNN (a frozen torchvision backbone) as a transformer.

    The transfer-learning recipe in scikit-learn terms: a network pretrained on
    a large image collection turns each image into a feature vector, and a
    simple model (``LogisticRegression``, ``SVC``, ...) is trained on those
    features in a ``Pipeline``. By default nothing is learned: ``fit`` loads
    the backbone, whose weights stay frozen, and ``transform`` runs it without
    gradients under ``torch.inference_mode`` in channels-last memory format,
    with batch norms folded into the convolutions before them.
    With ``fine_tune_layers=k`` and labels, ``fit`` also trains the last ``k``
    blocks with a temporary linear head, then drops the head.

    Each image is resized, centre-cropped and normalised as the weights
    require (``weights.transforms()``), on tensors and in batches (on the GPU
    for in-memory arrays when ``device`` is CUDA). Every batch
    the backbone sees holds exactly ``batch_size`` images (the last one is
    padded), so an image's features never depend on which images it is
    transformed with, nor on how many: one image alone gives bit-identical
    features to the same image in a batch (CPU kernels round differently for
    different batch shapes). Use ``batch_size=1`` for fast single-image calls.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="resnet18"
        A torchvision classification model name (``"resnet18"``, ``"resnet50"``,
        ``"vgg16"``, ``"densenet121"``, ... see
        ``torchvision.models.list_models(module=torchvision.models)``), or your
        own module taking ``(N, C, H, W)`` image batches. A module is copied at
        fit; the object you pass is never changed.
    weights : str, path-like, dict or None, default="DEFAULT"
        ``"DEFAULT"`` or a torchvision weights name (``"IMAGENET1K_V1"``) for
        a named backbone, loaded from torch's hub cache
        (``$TORCH_HOME/hub/checkpoints/``, never downloaded: a missing file is
        an error that names it and where to put it); a path to a
        ``.pth``/``.pt``/``.safetensors`` state dict; a state dict; or None:
        random initialisation (seeded by ``random_state``) for a named
        backbone, the module's current weights for your own. Files are loaded
        safely (``torch.load(weights_only=True)``, or safetensors when
        installed): pickles holding code are refused.
    layer : str, default=None
        A node name of the backbone's graph (torchvision's
        ``get_graph_node_names``, e.g. ``"layer3.1.relu_1"``) or a module name
        (``"layer3"``: its last node) whose output gives the features. None
        takes the penultimate features: the input of the backbone's last
        ``nn.Linear`` (its classifier), which is dropped; a backbone without
        one gives its output.
    pooling : {"avg", "max"} or None, default="avg"
        How a ``(N, C, H, W)`` feature map becomes a vector: global average or
        max over H and W (C features), or None: the flattened map
        (C * H * W features). Vector outputs are returned as they are.
    image_size : int or tuple of int, default=None
        None uses the weights' preprocessing (for ImageNet weights, and for
        ``weights=None``/a path: shorter side resized to 256, centre crop
        224 x 224). An int ``s`` resizes the shorter side to ``s`` and crops
        ``s x s``; ``(height, width)`` resizes to exactly that size.
    normalize : bool or tuple, default=True
        True normalises with the weights' mean and std (ImageNet's by
        default); False feeds the [0, 1] intensities unchanged (float input is
        then not range-checked); ``(mean, std)`` gives your own per-channel
        values.
    image_shape : tuple of int, default=None
        ``(C, H, W)`` of the images when X holds flat rows (2-D, one image per
        row flattened in C-order, as ``images.reshape(n, -1)``). One entry may
        be -1 (inferred, as in ``numpy.reshape``).
    fine_tune_layers : int, default=0
        0 keeps the backbone frozen. k > 0 needs ``fit(X, y)``: the last k
        blocks (the backbone's parameterised children in forward order, with
        ``nn.Sequential`` containers opened, e.g. ResNet's residual blocks)
        are trained together with a temporary linear head on ``y``; frozen
        blocks stay in eval mode (batch-norm statistics unchanged).
    max_iter : int, default=10
        Epochs of fine-tuning (only with ``fine_tune_layers > 0``).
    learning_rate : float, default=1e-4
        Adam's step size for fine-tuning.
    batch_size : int, default=32
        Images per batch, for feature extraction and fine-tuning.
    num_workers : int, default=0
        Worker processes loading and resizing images given as file paths or
        PIL images (a ``torch.utils.data.DataLoader``); 0 loads in the main
        process. Arrays are always preprocessed in the main process.
    compile : bool, default=False
        Run the backbone through ``torch.compile`` (first transform is slow;
        later ones faster).
    autocast : bool, default=True
        On CUDA, run the backbone in float16 under ``torch.autocast``
        (ignored on CPU).
    device : str or torch.device, default="auto"
        "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    random_state : int, RandomState instance or None, default=None
        Seeds random initialisation (``weights=None``) and fine-tuning.
    verbose : int, default=0
        0 silent; 1 progress bars over batches and fine-tuning epochs; 2 a
        line per fine-tuning epoch.

    Attributes
    ----------
    model_ : torch.nn.Module
        The loaded (and possibly fine-tuned) backbone, frozen, in eval mode;
        with ``layer=None`` its classifier layer is replaced by ``nn.Identity``.
    head_ : str or None
        Name of the classifier layer dropped for the penultimate features
        (``"fc"`` for ResNets), or None.
    preprocessing_ : dict
        The resize, crop, interpolation, mean and std applied to every image.
    n_features_in_ : int
        Pixels per image, only when fit on flat rows (2-D X).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when fit on a DataFrame of flat rows.
    fine_tuned_blocks_ : list of str
        Names of the blocks trained by fine-tuning (empty when frozen).
    classes_ : ndarray
        Labels seen by fine-tuning.
    n_iter_ : int
        Fine-tuning epochs run (0 when frozen).
    loss_curve_ : list of float
        Fine-tuning training loss (cross-entropy) of each epoch.

    See Also
    --------
    AutoencoderTransformer : Features learned from your own unlabeled data.
    sklearn.decomposition.PCA : Linear features of flattened pixels.

    References
    ----------
    Yosinski, J., Clune, J., Bengio, Y., & Lipson, H. (2014). How transferable
    are features in deep neural networks? NeurIPS.

    Razavian, A. S., Azizpour, H., Sullivan, J., & Carlsson, S. (2014). CNN
    features off-the-shelf: an astounding baseline for recognition. CVPR
    workshops.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_replearn import PretrainedCNNFeatures
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> cnn = torch.nn.Sequential(
    ...     torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
    ...     torch.nn.Flatten(), torch.nn.Linear(8, 10))
    >>> images = np.random.RandomState(0).randint(0, 256, (4, 40, 30, 3), np.uint8)
    >>> features = PretrainedCNNFeatures(cnn, weights=None, image_size=32)
    >>> features.fit_transform(images).shape
    (4, 8)
    >>> features.head_
    '4'

    A torchvision backbone (``weights="DEFAULT"`` needs its file in the torch
    hub cache; ``weights=None`` is random):

    >>> resnet = PretrainedCNNFeatures("resnet18", weights=None, image_size=32)
    >>> resnet.fit_transform(images).shape
    (4, 512)
    """

    _parameter_constraints: dict = {
        "backbone": [str, nn.Module],
        "weights": [str, os.PathLike, Mapping, None],
        "layer": [str, None],
        "pooling": [StrOptions({"avg", "max"}), None],
        "image_size": [Interval(Integral, 1, None, closed="left"), "array-like", None],
        "normalize": ["boolean", tuple],
        "image_shape": ["array-like", None],
        "fine_tune_layers": [Interval(Integral, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "compile": ["boolean"],
        "autocast": ["boolean"],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="resnet18",
        *,
        weights="DEFAULT",
        layer=None,
        pooling="avg",
        image_size=None,
        normalize=True,
        image_shape=None,
        fine_tune_layers=0,
        max_iter=10,
        learning_rate=1e-4,
        batch_size=32,
        num_workers=0,
        compile=False,
        autocast=True,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.image_size = image_size
        self.normalize = normalize
        self.image_shape = image_shape
        self.fine_tune_layers = fine_tune_layers
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.compile = compile
        self.autocast = autocast
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the backbone; with ``fine_tune_layers > 0``, fine-tune it on (X, y).

        Parameters
        ----------
        X : array-like, list or pandas Series of images
            uint8 arrays ``(N, H, W, C)``, float arrays in [0, 1] ``(N, C, H, W)``
            or ``(N, H, W, C)``, grayscale ``(N, H, W)``, flat rows
            ``(N, C*H*W)`` with ``image_shape``, or a list of PIL images, file
            paths or per-image arrays (sizes may differ).
        y : array-like of shape (n_samples,), default=None
            Class labels; required only for fine-tuning.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        images, _ = self._image_set(X, reset=True)
        if self.fine_tune_layers and y is None:
            raise ValueError(
                f"fine_tune_layers={self.fine_tune_layers} trains the last blocks "
                "with a classification head on labels: call fit(X, y), or set "
                "fine_tune_layers=0 to keep the backbone frozen."
            )
        device = self._resolve_device()
        model, preset = _load_backbone(self.backbone, self.weights, self.random_state)
        model.eval()
        self.head_ = None
        if self.layer is None:
            self.head_ = _drop_last_linear(model)
        self.preprocessing_ = _preprocessing_dict(
            preset, self.image_size, self.normalize, _first_conv_channels(model))
        self._runtime = {}
        if self.layer is not None:
            _check_layer(model, self.layer)
        self.model_ = model.to(device=device, memory_format=torch.channels_last)
        self.fine_tuned_blocks_, self.n_iter_, self.loss_curve_ = [], 0, []
        if isinstance(images, ArrayImages):
            self._preprocessor().check_channels(images.n_channels, "X")
        if self.fine_tune_layers:
            self._fine_tune(images, y, device)
        for parameter in self.model_.parameters():
            parameter.requires_grad_(False)
        self.model_.eval()
        self._n_features_out = self._probe_width(device)
        return self

    def _fine_tune(self, images, y, device):
        from ._finetune import fine_tune

        result = fine_tune(self, images, y, device)
        self._runtime = {}  # drop modules cached (or compiled) before tuning
        self.classes_ = result.classes
        self.fine_tuned_blocks_ = result.blocks
        self.n_iter_ = result.n_iter
        self.loss_curve_ = result.loss_curve

    def _probe_width(self, device):
        """Output width of the feature module, from one blank image."""
        probe = self._one_image(device, random=False)
        try:
            with torch.inference_mode():
                output = self._pool(self._feature_module(device)(probe))
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(
                f"The backbone failed on a batch of shape {tuple(probe.shape)} "
                f"(N, C, H, W) with {type(exc).__name__}: {exc}. Check that "
                "image_size and the channel count suit it."
            ) from exc
        return int(output.shape[1])

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Extract one feature vector per image.

        Parameters
        ----------
        X : array-like, list or pandas Series of images
            As in :meth:`fit`.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            Features, float32 (float64 when X is a float64 array).
        """
        check_is_fitted(self)
        images, out_dtype = self._image_set(X, reset=False)
        device = self._inference_device()
        return self._run(images, self._feature_module(device), self._pool, device,
                         out_dtype, description="transform")

    def feature_maps(self, X, layer=None):
        """Raw output of a layer, e.g. the ``(N, C, H, W)`` maps, for inspection.

        Parameters
        ----------
        X : array-like, list or pandas Series of images
            As in :meth:`fit`.
        layer : str, default=None
            A node name (``get_graph_node_names``); None uses ``self.layer``.

        Returns
        -------
        maps : ndarray of shape (n_samples, ...)
            The layer's output per image (float32), unpooled.
        """
        check_is_fitted(self)
        layer = self.layer if layer is None else layer
        if layer is None:
            names = ", ".join(_node_names(self.model_)[-12:])
            raise ValueError(
                "feature_maps needs a layer: pass layer='...' (or set the "
                f"estimator's layer). Last node names of this backbone: {names}."
            )
        _check_layer(self.model_, layer)
        images, _ = self._image_set(X, reset=False)
        device = self._inference_device()
        return self._run(images, self._feature_module(device, layer), lambda out: out,
                         device, np.float32, description="feature_maps")

    # ------------------------------------------------------------- helpers
    def _preprocessor(self):
        return Preprocessing(**self.preprocessing_)

    def _check_range(self):
        return self.normalize is not False

    def _image_set(self, X, *, reset):
        """Validate X; returns an ImageSet and the output dtype."""
        X = _unwrap_items(X)
        if isinstance(X, list | tuple) and is_image_list(X):
            images, out_dtype = ItemImages(X, check_range=self._check_range()), None
        else:
            if isinstance(X, np.ndarray | torch.Tensor) and X.ndim > 2:
                if reset:
                    _forget_input_features(self)
            else:
                X = self._validate_flat(X, reset)
            out_dtype = getattr(X, "dtype", None)
            images = as_image_set(X, image_shape=self.image_shape,
                                  check_range=self._check_range())
        if len(images) == 0:
            raise ValueError("X contains no images (0 samples); pass at least one.")
        return images, np.float64 if out_dtype == np.float64 else np.float32

    def _validate_flat(self, X, reset):
        """validate_data for 2-D numeric data (flat rows); sparse is refused."""
        if sp.issparse(X):
            raise TypeError(
                "X is a scipy sparse matrix, but PretrainedCNNFeatures needs dense "
                "images: pass X.toarray() (rows with image_shape), or file paths."
            )
        if reset:
            _forget_input_features(self)
        return validate_data(self, X, reset=reset, dtype="numeric",
                             ensure_min_samples=1)

    def _feature_module(self, device, layer=None):
        """The module computing the features, cached per layer, device and compile.

        Batch norms are folded into the convolutions before them (in a copy:
        ``model_`` keeps its own layers for plotting, pickling and tuning;
        folding is checked on a random image), and the result is compiled
        when asked. The cache is rebuilt when ``model_`` moves to another
        device, when a weight or buffer changes in place (``load_state_dict``,
        an in-place operation on a parameter) or is replaced, and when a layer
        is replaced. Edits through ``parameter.data`` are not tracked by torch:
        after those, call ``set_params`` (which clears the cache) or refit.
        """
        runtime = self.__dict__.setdefault("_runtime", {})
        if not _on_device(self.model_, device):
            # Outside inference mode (transform runs in it): the moved weights
            # must stay ordinary tensors, which keep version counters.
            with torch.inference_mode(False):
                self.model_.to(device)
        fingerprint = _weights_fingerprint(self.model_)
        if runtime.get("fingerprint") != fingerprint:
            runtime.clear()
            runtime["fingerprint"] = fingerprint
        layer = self.layer if layer is None else layer
        key = (layer, str(device), bool(self.compile))
        module = runtime.get(key)
        if module is None:
            module = self.model_
            if layer is not None:
                module = _NodeOutput(self.model_, layer)
            module = fold_batch_norms(module.eval(),
                                      example=self._one_image(device, random=True))
            if self.compile:
                module = torch.compile(module)
            runtime[key] = module
        return module

    def set_params(self, **params):
        """Set parameters (sklearn's ``set_params``); clears the feature cache."""
        self.__dict__.pop("_runtime", None)
        return super().set_params(**params)

    def _one_image(self, device, random):
        """A batch of one preprocessed-size image: blank (to probe the output
        width) or random, from a fixed seed (to check the folded network)."""
        shape = (1, self.preprocessing_["in_channels"] or 3,
                 *self._preprocessor().output_size)
        image = (torch.randn(shape, generator=torch.Generator().manual_seed(0))
                 if random else torch.zeros(shape))
        return image.to(device).contiguous(memory_format=torch.channels_last)

    def _pool(self, output):
        if output.ndim == 2:
            return output
        if self.pooling is None:
            return output.flatten(1)
        if output.ndim == 4:
            if self.pooling == "avg":
                return output.mean(dim=(2, 3))
            return output.amax(dim=(2, 3))
        raise ValueError(
            f"The features have shape {tuple(output.shape)} (not (N, C, H, W) maps), "
            f"which pooling={self.pooling!r} cannot pool over H and W; pass "
            "pooling=None for the flattened output, or another layer."
        )

    def _run(self, images, module, postprocess, device, out_dtype, description):
        """Run ``module`` over all images in fixed-size batches."""
        preprocess = self._preprocessor()
        n_images = len(images)
        outputs = None
        autocast = (torch.autocast(device.type, dtype=torch.float16)
                    if device.type == "cuda" and self.autocast else nullcontext())
        progress = None
        if self.verbose:
            from tqdm.auto import tqdm

            progress = tqdm(total=n_images, desc=description, unit="img",
                            file=sys.stderr, leave=False)
        try:
            with torch.inference_mode(), autocast:
                for rows, batch in _prepared_batches(
                        images, preprocess, self.batch_size, self.num_workers,
                        device):
                    n_rows = batch.shape[0]
                    batch = preprocess.finish(batch)
                    if n_rows < self.batch_size:
                        padding = batch.new_zeros(
                            (self.batch_size - n_rows, *batch.shape[1:]))
                        batch = torch.cat([batch, padding]).contiguous(
                            memory_format=torch.channels_last)
                    batch = batch.to(device, non_blocking=True)
                    result = postprocess(module(batch))[:n_rows]
                    if outputs is None:
                        outputs = np.empty((n_images, *result.shape[1:]),
                                           dtype=out_dtype)
                    outputs[rows] = to_numpy(result.float())
                    if progress is not None:
                        progress.update(n_rows)
        finally:
            if progress is not None:
                progress.close()
        return outputs

    def __getstate__(self):
        # A copy: on Python >= 3.11 object.__getstate__ returns the live
        # __dict__, and pickling must not empty this estimator's cache.
        state = dict(super().__getstate__())
        state.pop("_runtime", None)
        model = state.get("model_")
        if model is not None and any(p.device.type != "cpu" for p in
                                     model.parameters()):
            state["model_"] = deepcopy(model).to("cpu")
        return state


def _unwrap_items(X):
    """Lists of images from pandas objects and string arrays; others unchanged."""
    pd = sys.modules.get("pandas")  # pandas is optional: no DataFrame without it
    if pd is not None:
        if isinstance(X, pd.DataFrame) and X.shape[1] == 1 and not (
                pd.api.types.is_numeric_dtype(X.dtypes.iloc[0])):
            X = X.iloc[:, 0]
        if isinstance(X, pd.Series):
            return X.tolist()
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS" and (
            X.ndim == 1 or (X.ndim == 2 and X.shape[1] == 1)):
        return X.ravel().tolist()
    return X


def _forget_input_features(estimator):
    """Drop n_features_in_/feature_names_in_ of an earlier fit on flat rows."""
    for name in ("n_features_in_", "feature_names_in_"):
        if hasattr(estimator, name):
            delattr(estimator, name)


def _on_device(model, device):
    """Whether ``model``'s weights are on ``device`` ("cuda" matches "cuda:0")."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return True
    if parameter.device.type != device.type:
        return False
    # One CPU ("cpu:0" is "cpu"); an accelerator without an index means any.
    return (device.type == "cpu" or device.index is None
            or parameter.device.index == device.index)


def _weights_fingerprint(model):
    """Changes when a weight or buffer of ``model`` is replaced, moved or edited
    in place (in-place operations bump a tensor's version counter), and when
    a layer is replaced."""
    tensors = tuple(
        (id(tensor), tensor.data_ptr(),
         None if tensor.is_inference() else tensor._version)
        for tensor in (*model.parameters(), *model.buffers()))
    return tensors, tuple(id(module) for module in model.modules())


class _NodeOutput(nn.Module):
    """A graph node's output as a module (torchvision feature extraction)."""

    def __init__(self, model, layer):
        from torchvision.models.feature_extraction import create_feature_extractor

        super().__init__()
        self.extractor = create_feature_extractor(model, return_nodes={layer: "out"})

    def forward(self, x):
        return self.extractor(x)["out"]


# --------------------------------------------------------------- batching
# Largest batch (as float32 bytes, before resizing) resized on the GPU.
_GPU_RESIZE_MAX_BYTES = 1 << 30


def _prepared_batches(images, preprocess, batch_size, num_workers, device):
    """Yield ``(rows, batch)``: resized images of one batch, uint8 or float."""
    if isinstance(images, ArrayImages):
        # In-memory images are resized where the network runs: on a GPU the
        # CPU's resize and crop would bound the throughput (and uint8 images
        # copy 4x fewer bytes than the float batch).
        for rows in iter_row_batches(len(images), batch_size):
            batch = images.load_batch(rows)
            # (Unless the batch is huge: resizing converts it to float32, and
            # a batch of large photos would then fill the GPU's memory.)
            if device.type == "cuda" and batch.numel() * 4 <= _GPU_RESIZE_MAX_BYTES:
                batch = batch.to(device)
            yield rows, preprocess.prepare(batch, "X")
        return
    if num_workers == 0:
        for rows in iter_row_batches(len(images), batch_size):
            prepared = [preprocess.prepare(images.load(index), f"X[{index}]")
                        for index in range(rows.start, rows.stop)]
            yield rows, stack_prepared(prepared)
        return
    loader = torch.utils.data.DataLoader(
        _PreparedImages(images, preprocess), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=_collate_prepared,
    )
    start = 0
    for batch in loader:
        if isinstance(batch, LoadFailure):
            raise ValueError(batch.message)
        rows = slice(start, start + batch.shape[0])
        start = rows.stop
        yield rows, batch


class _PreparedImages(torch.utils.data.Dataset):
    """Loads and resizes one image per item (in DataLoader workers)."""

    def __init__(self, images, preprocess):
        self.images = images
        self.preprocess = preprocess

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        try:
            return self.preprocess.prepare(self.images.load(index), f"X[{index}]")
        except ValueError as exc:
            # Re-raised in the main process without the worker's traceback.
            return LoadFailure(str(exc))


def _collate_prepared(items):
    for item in items:
        if isinstance(item, LoadFailure):
            return item
    return stack_prepared(items)


# ---------------------------------------------------------------- backbone
def _weights_kind(weights):
    if weights is None:
        return "none"
    if isinstance(weights, Mapping):
        return "state_dict"
    if isinstance(weights, os.PathLike):
        return "path"
    if (os.sep in weights or "/" in weights or os.path.isfile(weights)
            or weights.lower().endswith(_WEIGHT_FILE_SUFFIXES)):
        return "path"
    return "name"


def _classification_models():
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _load_backbone(backbone, weights, random_state):
    """Build the backbone; returns ``(model, preset)`` (preset: weights' transforms)."""
    kind = _weights_kind(weights)
    if isinstance(backbone, nn.Module):
        model = deepcopy(backbone)
        if kind == "name":
            raise ValueError(
                f"weights={weights!r} looks like a torchvision weights name, but "
                "backbone is your own module; pass a path to a state dict file, a "
                "state dict, or None to keep the module's current weights."
            )
        if kind != "none":
            _load_state_dict(model, weights)
        return model, None

    import torchvision

    models = _classification_models()
    if backbone not in models:
        close = difflib.get_close_matches(backbone, models, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"backbone={backbone!r} is not a torchvision classification model.{hint} "
            "Valid names: torchvision.models.list_models(module=torchvision.models) "
            f"({len(models)} models, e.g. 'resnet18', 'resnet50', 'vgg16', "
            "'densenet121'); or pass your own torch.nn.Module."
        )
    if kind == "name":
        enum = torchvision.models.get_model_weights(backbone)
        try:
            resolved = enum.verify(weights)
        except KeyError:
            names = ", ".join(repr(name) for name in enum.__members__)
            raise ValueError(
                f"weights={weights!r} is not a weights name of {backbone!r}; valid "
                f"names: {names}. Or pass a path to a state dict file, or None."
            ) from None
        cache_file = _cached_weights_file(resolved, backbone, weights)
        # Refuse unsafe pickles before torchvision (which does not pass
        # weights_only=True) reads the same cached file.
        _safe_load(cache_file)
        model = torchvision.models.get_model(backbone, weights=resolved)
        return model, _preset_from_weights(resolved)
    with seeded(random_state):
        model = torchvision.models.get_model(backbone, weights=None)
    if kind != "none":
        _load_state_dict(model, weights)
    return model, None


def _cached_weights_file(resolved, backbone, weights):
    file_name = os.path.basename(urlparse(resolved.url).path)
    directory = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(directory, file_name)
    if not os.path.isfile(path):
        raise ValueError(
            f"backbone={backbone!r} with weights={weights!r} ({resolved}) needs the "
            f"file {file_name!r} in {directory} (torch's hub cache; set TORCH_HOME to "
            "move it), and it is not there. Nothing is downloaded: fetch "
            f"{resolved.url} on a machine with network access and copy it into that "
            f"folder (or run torchvision.models.get_model({backbone!r}, "
            f"weights={weights!r}) once there), or pass weights='/path/to/"
            f"{file_name}'."
        )
    return path


def _preset_from_weights(resolved):
    transforms = resolved.transforms()
    try:
        return {
            "resize_size": int(transforms.resize_size[0]),
            "crop_size": int(transforms.crop_size[0]),
            "mean": tuple(float(v) for v in transforms.mean),
            "std": tuple(float(v) for v in transforms.std),
            "interpolation": transforms.interpolation,
            "antialias": bool(transforms.antialias),
        }
    except AttributeError:  # pragma: no cover - all classification weights have them
        return None


def _safe_load(path):
    """Load a state dict file without running code from it."""
    path = os.fspath(path)
    if path.lower().endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(
                f"weights={path!r} is a safetensors file, but the safetensors package "
                "is not installed: pip install safetensors, or save the state dict "
                "with torch.save."
            ) from None
        try:
            return load_file(path, device="cpu")
        except Exception as exc:
            raise ValueError(f"cannot read the safetensors file {path!r}: {exc}") \
                from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"Refused to load {path!r}: it is a pickle holding Python objects other "
            "than tensors, and unpickling it could run arbitrary code "
            "(torch.load(weights_only=True) rejected it). Save only the state dict "
            "(torch.save(model.state_dict(), path)) or use a .safetensors file."
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"cannot read {path!r} as a torch state dict ({type(exc).__name__}: "
            f"{exc}). Pass a file written by torch.save(model.state_dict(), path)."
        ) from exc


def _load_state_dict(model, weights):
    source = f"weights={os.fspath(weights)!r}" if not isinstance(weights, Mapping) \
        else "the state dict passed as weights"
    if isinstance(weights, Mapping):
        state = weights
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(
                f"weights={path!r} is not an existing file (working directory "
                f"{os.getcwd()!r}); pass a path to a .pth/.pt/.safetensors state "
                "dict, a torchvision weights name, or None."
            )
        state = _safe_load(path)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(
            f"{source} is not a state dict (a mapping of names to tensors); save one "
            "with torch.save(model.state_dict(), path)."
        )
    state = {_DENSENET_OLD_KEY.sub(r"\1\2", key): value for key, value in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{source} does not fit the backbone {type(model).__name__}: {exc}. Pass "
            "weights saved from the same architecture (and number of classes)."
        ) from exc


def _drop_last_linear(model):
    """Replace the last ``nn.Linear`` (the classifier) by ``nn.Identity``."""
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name]
    if not names:
        return None
    model.set_submodule(names[-1], nn.Identity())
    return names[-1]


def _first_conv_channels(model):
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def _node_names(model):
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        return get_graph_node_names(model)[1]
    except Exception as exc:
        raise ValueError(
            f"layer needs torch.fx to trace the backbone, which failed "
            f"({type(exc).__name__}: {exc}); use layer=None for the penultimate "
            "features."
        ) from exc


def _check_layer(model, layer):
    names = _node_names(model)
    # A module name ("layer3") stands for the last node inside it.
    if layer not in names and not any(name.startswith(layer + ".") for name in names):
        close = difflib.get_close_matches(layer, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"layer={layer!r} is not a node of this backbone.{hint} Valid layers "
            "(torchvision.models.feature_extraction.get_graph_node_names(model)[1]): "
            f"{', '.join(names)}."
        )


def _preprocessing_dict(preset, image_size, normalize, in_channels):
    """Resolve resize/crop/normalisation from the weights and the parameters."""
    from torchvision.transforms import InterpolationMode

    preset = preset or {
        "resize_size": 256, "crop_size": 224, "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD, "interpolation": InterpolationMode.BILINEAR,
        "antialias": True,
    }
    if image_size is None:
        resize, crop = preset["resize_size"], (preset["crop_size"],) * 2
    elif isinstance(image_size, Integral):
        resize, crop = int(image_size), (int(image_size),) * 2
    else:
        size = tuple(np.asarray(image_size).tolist())
        if len(size) != 2 or not all(isinstance(s, Integral) and s > 0 for s in size):
            raise ValueError(
                "image_size must be an int (shorter side, then a square centre crop) "
                f"or (height, width) of positive ints; got {image_size!r}."
            )
        resize, crop = size, None
    if normalize is True:
        mean, std = preset["mean"], preset["std"]
    elif normalize is False:
        mean = std = None
    else:
        if len(normalize) != 2 or len(normalize[0]) != len(normalize[1]) or any(
                s <= 0 for s in normalize[1]):
            raise ValueError(
                "normalize must be True, False or (mean, std) with one positive std "
                f"per channel, e.g. ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)); got "
                f"{normalize!r}."
            )
        mean = tuple(float(v) for v in normalize[0])
        std = tuple(float(v) for v in normalize[1])
    return {
        "resize_size": resize, "crop_size": crop, "mean": mean, "std": std,
        "interpolation": preset["interpolation"], "antialias": preset["antialias"],
        "in_channels": in_channels,
    }
