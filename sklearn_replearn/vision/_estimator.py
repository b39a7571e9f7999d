"""PretrainedCNNFeatures: transfer-learning features from torchvision backbones.

The estimator alone: parameters, validation, fitted state, persistence. Its
work is done by the modules beside it: backbones and weights (``backbones``,
one source per kind), layers and pooling (``_layers``), image inputs
(``_inputs``), preprocessing (``_preprocessing``), the cached inference
module (``_feature_cache``), batches (``_batching``) and fine-tuning
(``_finetune``).
"""

import copyreg
import os
from collections.abc import Mapping
from copy import deepcopy
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from .._utils._sklearn_compat import Interval, StrOptions, fit_context
from ..base import BaseRepresentation
from ._batching import run_batches
from ._compile import CompiledOrEager
from ._feature_cache import cached_feature_module
from ._inputs import ArrayImages, read_images
from ._layers import (
    check_layer,
    check_pooling_applies,
    cut_at,
    node_names,
    output_width,
    pool_features,
)
from ._persistence import plain_state, restore_state
from ._preprocessing import Preprocessing, preprocessing_config
from .backbones import get_backbone_source
from .backbones._registry import resolve_backbone
from .backbones._source import first_conv_channels

__all__ = ["PretrainedCNNFeatures"]


class PretrainedCNNFeatures(BaseRepresentation):
    """Features of a pretrained CNN or vision transformer as a transformer.

    Read more in the :ref:`User Guide <guide-pretrained>`.

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
    different batch shapes). Use ``batch_size=1`` for fast single-image
    calls, or ``batch_invariant=False`` to run a short batch as it is,
    giving up bit-identity for speed. (This holds among calls run the same
    way: a call that ``compile="auto"`` runs compiled rounds differently from
    an eager one.)

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="resnet18"
        A torchvision classification model name (``"resnet18"``, ``"resnet50"``,
        ``"vgg16"``, ``"densenet121"``, ... see
        ``torchvision.models.list_models(module=torchvision.models)``), or your
        own module taking ``(N, C, H, W)`` image batches. A module is copied at
        fit; the object you pass is never changed.
        ``"timm:<name>"`` builds a timm model (``"timm:convnext_tiny"``,
        ``"timm:resnet50"``; ``pip install "sklearn-replearn[timm]"``) with
        timm's preprocessing (``resolve_data_config``). ``"hf:<repo id or
        folder>"`` builds a Hugging Face ``transformers.AutoModel``
        (``"hf:facebook/dinov2-small"``, or a folder written by
        ``save_pretrained``; ``pip install "sklearn-replearn[hf]"``) with its
        image processor's preprocessing (else the config's ``image_size``),
        features from its last hidden state. A timm model instance works
        like a named one; a ``transformers`` model instance as any module
        (wrap it so that it returns a tensor).
    weights : str, path-like, dict or None, default="DEFAULT"
        ``"DEFAULT"`` or a torchvision weights name (``"IMAGENET1K_V1"``) for
        a named backbone, loaded from torch's hub cache
        (``$TORCH_HOME/hub/checkpoints/``, downloaded there on first use, see
        ``download``); a path to a
        ``.pth``/``.pt``/``.safetensors`` state dict; a state dict; or None:
        random initialisation (seeded by ``random_state``) for a named
        backbone, the module's current weights for your own. Files are loaded
        safely (``torch.load(weights_only=True)``, or safetensors when
        installed): pickles holding code are refused. For ``"timm:..."``:
        ``"DEFAULT"`` is timm's default pretrained tag (another tag, e.g.
        ``"in1k"``, picks ``name.tag``), fetched by timm into the Hugging Face
        cache; for ``"hf:..."``: ``"DEFAULT"`` loads the pretrained weights of
        the folder or repo, None builds the model from its config with random
        weights. Both also take a state dict file.
    download : bool, default=True
        Download named torchvision weights missing from the cache, as
        torchvision does (SHA-256 prefix checked, progress bar with
        ``verbose``; a file that fails the check is not kept, and is then
        loaded safely like any file). False forbids it (air-gapped or
        reproducible setups): a missing file is then an error that names it,
        its folder and its URL. Without a network the attempt fails within
        about 10 seconds with that same error. timm's and Hugging Face's
        pretrained weights are fetched by those libraries into the Hugging
        Face cache; set ``HF_HUB_OFFLINE=1`` to forbid that.
    layer : str, default=None
        A node name of the backbone's graph (torchvision's
        ``get_graph_node_names``, e.g. ``"layer3.1.relu_1"``) or a module name
        (``"layer3"``: its last node) whose output gives the features. None
        takes the penultimate features: the input of the backbone's last
        ``nn.Linear`` (its classifier), which is dropped; a backbone without
        one gives its output.
    pooling : {"avg", "mean", "max", "cls"} or None, default="avg"
        How a ``(N, C, H, W)`` feature map becomes a vector: global average
        (``"avg"`` or ``"mean"``) or max over H and W (C features), or None:
        the flattened map (C * H * W features). For vision transformers
        (timm's ViTs, Hugging Face models), the ``(N, T, D)`` tokens:
        ``"cls"`` the class token, ``"avg"``/``"mean"`` (``"max"``) the mean
        (max) of the patch tokens, None all tokens flattened. For timm models
        with ``layer=None`` it is timm's own global pooling
        (``reset_classifier(0, global_pool)``). Features that are already
        vectors, ``(N, D)``, are returned as they are with the default
        ``"avg"`` (or ``"mean"``); any other value raises a ValueError at fit,
        as it would have no effect. This is the case of ``layer=None`` on
        torchvision's classification models and most modules: the network
        itself makes the classifier's input a vector (ResNet's global average
        pool, VGG's fully connected layers, torchvision ViT's class token). For max
        pooling or the unpooled maps, choose a ``layer`` giving maps (e.g.
        ``"layer4"`` on a ResNet).
    image_size : int or tuple of int, default=None
        None uses the weights' preprocessing (for ImageNet weights, and for
        ``weights=None``/a path: shorter side resized to 256, centre crop
        224 x 224). An int ``s`` (at least 2) resizes the shorter side to ``s``
        and crops ``s x s``; ``(height, width)`` resizes to exactly that size
        (at least 2 pixels in all).
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
    batch_invariant : bool, default=True
        Pad the last, short batch of each call to ``batch_size`` images, so
        that every batch the backbone sees has one shape and an image's
        features never depend on the other images of the call: bit-identical
        alone or in any batch. False runs the short batch as it is: a
        ``transform`` of 10 images at ``batch_size=32`` then costs 10 images'
        work instead of 32, and an image's features may differ by float
        rounding between calls that batch it differently (kernels may round
        differently for other batch shapes; the user guide's performance
        page gives measured sizes). A compiled backbone always pads (its one
        static shape serves every call).
    compile : bool or "auto", default="auto"
        Run the backbone through ``torch.compile`` with inductor's
        ``freezing``: the frozen weights become constants (convolutions
        prepacked, batch norms folded once), compiled under the ``autocast``
        dtype. The first compiled call waits for the compilation (seconds to
        tens of seconds); later calls of any size reuse it (every batch holds
        ``batch_size`` images, so one compilation serves them all).
        ``"auto"`` compiles when the work repays the compile time: on a CPU,
        once the images of a call, plus those the estimator already
        transformed eagerly, reach the break-even number of images (compile
        time over the time each image saves, measured at 224 x 224 for
        float32 and for bfloat16, and scaled by the pixels per image), so a
        short ``transform`` never waits
        for a compilation. It then times the compiled module against the
        eager one on a batch and keeps the compiled module unless it ran
        below 0.95 times the eager speed: where it does on your hardware,
        ``"auto"`` stays eager for that backbone (a module: its class and
        parameter count), layer, image size, batch size, device type and
        dtype for the rest of the process. Once compiled, it stays
        compiled. Devices without a measured break-even (CUDA, MPS) stay
        eager under ``"auto"``.
        torch's on-disk compile caches shorten a compilation but cannot be
        detected before tracing, so the rule does not count on them.
        True always compiles; False never does. Where compilation fails (no
        C++ compiler, an unsupported operation), features are computed
        eagerly with one warning per process, and ``"auto"`` stops trying on
        that device type. Compiled features agree with eager ones to float
        rounding (cosine similarity >= 0.999 per image), not bit for bit.
    autocast : bool, default=True
        Run the backbone in reduced precision under ``torch.autocast``:
        float16 on CUDA; bfloat16 on a CPU that computes it natively
        (AVX512-BF16 or AMX-BF16, e.g. Intel Cooper Lake, Sapphire Rapids and
        later, AMD Zen 4 and later), faster there, with features
        within a cosine similarity of 0.999 of float32's; float32 on other
        CPUs (where bfloat16 would be emulated, and slower) and on MPS.
        False always computes in float32. Fine-tuning trains in float32
        either way; features are returned as float32 (or float64).
        ``SKLEARN_REPLEARN_CPU_BF16=0`` (or ``1``) in the environment
        overrides the CPU detection.
    device : str or torch.device, default="auto"
        "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    random_state : int, RandomState instance or None, default=None
        Seeds random initialisation (``weights=None``) and fine-tuning.
    verbose : int, default=0
        0 silent; 1 progress bars over weight downloads, batches and
        fine-tuning epochs; 2 a line per fine-tuning epoch.

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
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
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

    Notes
    -----
    Persistence: pickle and joblib store everything. ``skops.io.dump`` stores
    a fitted torchvision backbone (given by name) as plain arrays of its
    weights, rebuilt by name on loading, so ``skops.io.load`` needs only
    this class trusted and unpickles nothing. With your own ``nn.Module`` as
    ``backbone`` (or ``weights`` given as a state dict of tensors), skops
    would have to trust torch's types: ``skops.io.dump`` raises a
    ``TypeError`` instead; save such an estimator with pickle or joblib.

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
        "download": ["boolean"],
        "layer": [str, None],
        "pooling": [StrOptions({"avg", "mean", "max", "cls"}), None],
        # 1 x 1 inputs: torchvision's resize of uint8 colour images fails.
        "image_size": [Interval(Integral, 2, None, closed="left"), "array-like", None],
        "normalize": ["boolean", tuple],
        "image_shape": ["array-like", None],
        "fine_tune_layers": [Interval(Integral, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "batch_invariant": ["boolean"],
        "compile": ["boolean", StrOptions({"auto"})],
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
        download=True,
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
        batch_invariant=True,
        compile="auto",
        autocast=True,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.download = download
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
        self.batch_invariant = batch_invariant
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
    @fit_context(prefer_skip_nested_validation=True)
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
        # A fit that raises (bad y, layer, weights...) leaves the estimator as
        # it was: every fitted attribute is rebound, never mutated, until here.
        with self._restored_on_failure():
            images, _ = self._image_set(X, reset=True)
            if self.fine_tune_layers and y is None:
                raise ValueError(
                    f"fine_tune_layers={self.fine_tune_layers} trains the last blocks "
                    "with a classification head on labels: call fit(X, y), or set "
                    "fine_tune_layers=0 to keep the backbone frozen."
                )
            device = self._resolve_device()
            prefix, name = resolve_backbone(self.backbone)
            source = get_backbone_source(prefix)
            model = source.build(name, self.weights, random_state=self.random_state,
                                 download=self.download, verbose=self.verbose)
            model.eval()
            preset = source.preprocessing(model, name, self.weights)
            self._backbone_source = prefix
            self.head_ = None
            if self.layer is None:
                self.head_ = source.drop_classifier(model, self.pooling)
            self.preprocessing_ = preprocessing_config(
                preset, self.image_size, self.normalize, first_conv_channels(model))
            self._runtime = {}
            # What transform computes: set_params after fit changes the next
            # fit, never the features of this one (a layer=None set later
            # returned the 1000 class logits of the classifier kept whole).
            self._fitted_choices = {name: getattr(self, name)
                                    for name in ("layer", "pooling", "normalize")}
            if self.layer is not None:
                check_layer(model, self.layer)
            self.model_ = model.to(device=device, memory_format=torch.channels_last)
            # How skops's plain state rebuilds model_ (None: it cannot).
            spec = source.rebuild_spec(name, self.weights)
            self._rebuild_spec = None if spec is None else {"source": prefix, **spec}
            self.fine_tuned_blocks_, self.n_iter_, self.loss_curve_ = [], 0, []
            self.__dict__.pop("classes_", None)  # only a fine-tuning fit has labels
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
        from ._finetune import fine_tune  # imports skorch: only when tuning

        result = fine_tune(
            self.model_, cut_at(self.model_, self.layer), self._pool,
            self._preprocessor(), images, y,
            fine_tune_layers=self.fine_tune_layers,
            n_features=self._probe_width(device),
            blocks=list(self._source().fine_tune_blocks(self.model_)),
            learning_rate=self.learning_rate, max_iter=self.max_iter,
            batch_size=self.batch_size, num_workers=self.num_workers, device=device,
            random_state=self.random_state, verbose=self.verbose,
        )
        self._runtime = {}  # drop modules cached (or compiled) before tuning
        self.classes_ = result.classes
        self.fine_tuned_blocks_ = result.blocks
        self.n_iter_ = result.n_iter
        self.loss_curve_ = result.loss_curve

    def _probe_width(self, device):
        """Output width of the feature module, from one blank image; refuses
        a ``pooling`` that the features would silently ignore."""
        probe = self._preprocessor().example_batch(device, random=False)
        layer, pooling = self._fitted("layer"), self._fitted("pooling")

        def checked_pool(output):
            if not (layer is None and self._source().pools_its_features(self.model_)):
                check_pooling_applies(output, pooling, layer, self.head_)
            return self._pool(output)

        # The eager module (n_images=None): a probe never compiles.
        return output_width(self._feature_module(device), checked_pool, probe)

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
        # set_params may have changed them since fit (e.g. batch_size=0).
        self._check_params_after_fit()
        images, out_dtype = self._image_set(X, reset=False)
        device = self._inference_device()
        module = self._feature_module(device, n_images=len(images))
        return self._run(images, module, self._pool, device, out_dtype,
                         description="transform")

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
        self._check_params_after_fit()
        if not (layer is None or isinstance(layer, str)):
            raise TypeError(
                f"layer must be a node name (str) or None; got {layer!r}."
            )
        layer = self._fitted("layer") if layer is None else layer
        if layer is None:
            names = ", ".join(node_names(self.model_)[-12:])
            raise ValueError(
                "feature_maps needs a layer: pass layer='...' (or set the "
                f"estimator's layer). Last node names of this backbone: {names}."
            )
        check_layer(self.model_, layer)
        images, _ = self._image_set(X, reset=False)
        device = self._inference_device()
        module = self._feature_module(device, layer, n_images=len(images))
        return self._run(images, module, lambda out: out, device, np.float32,
                         description="feature_maps")

    # ------------------------------------------------------------- helpers
    def _fitted(self, name):
        """``layer``, ``pooling`` or ``normalize`` as fit used them."""
        return self._fitted_choices[name]

    def _preprocessor(self):
        return Preprocessing(**self.preprocessing_)

    def _pool(self, output):
        """The layer's output as one vector per image (``pooling``)."""
        return pool_features(output, self._fitted("pooling"),
                             self._source().prefix_tokens(self.model_))

    def _source(self):
        """The source of the fitted backbone (``vision.backbones``)."""
        return get_backbone_source(self._backbone_source)

    def _image_set(self, X, *, reset):
        """Validate X; returns an ImageSet and the output dtype."""
        normalize = self.normalize if reset else self._fitted("normalize")
        images, out_dtype = read_images(
            X, image_shape=self.image_shape, check_range=normalize is not False,
            validate_rows=partial(validate_data, self, reset=reset, dtype="numeric",
                                  ensure_min_samples=1),
        )
        if reset and not getattr(images, "from_rows", False):
            # n_features_in_ and feature_names_in_ describe flat rows only.
            for name in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
        return images, out_dtype

    def _feature_module(self, device, layer=None, n_images=None):
        """The module computing the features (see ``cached_feature_module``):
        compiled or eager as ``compile`` says for ``n_images`` (None: eager).

        After editing weights through ``parameter.data`` (not tracked by
        torch), call ``set_params`` (which clears the cache) or refit.
        """
        layer = self._fitted("layer") if layer is None else layer
        # A module backbone: its class and size (user Sequentials, and
        # resnet18 and resnet50 instances, get verdicts of their own).
        backbone = (self.backbone if isinstance(self.backbone, str)
                    else (type(self.backbone).__qualname__,
                          sum(p.numel() for p in self.model_.parameters())))
        return cached_feature_module(
            self.__dict__.setdefault("_runtime", {}), self.model_, layer=layer,
            device=device, compile=self.compile, preprocess=self._preprocessor(),
            n_images=n_images, autocast=self.autocast, batch_size=self.batch_size,
            family=(backbone, layer),
        )

    def _run(self, images, module, postprocess, device, out_dtype, description):
        """Run ``module`` over all images in fixed-size batches."""
        # A compiled module is specialised to one batch shape: always padded.
        pad = self.batch_invariant or isinstance(module, CompiledOrEager)
        return run_batches(
            images, module, postprocess, self._preprocessor(),
            batch_size=self.batch_size, num_workers=self.num_workers, device=device,
            autocast=self.autocast, out_dtype=out_dtype, verbose=self.verbose,
            description=description, pad=pad,
        )

    def set_params(self, **params):
        """Set parameters (sklearn's ``set_params``); clears the feature cache."""
        self.__dict__.pop("_runtime", None)
        return super().set_params(**params)

    def __reduce_ex__(self, protocol):
        # pickle, joblib and copy: the model stays a torch module (a user's
        # module cannot be rebuilt otherwise); skops reads __getstate__.
        return copyreg.__newobj__, (type(self),), self._pickle_state()

    def _pickle_state(self):
        # A copy: on Python >= 3.11 object.__getstate__ returns the live
        # __dict__, and pickling must not empty this estimator's cache.
        state = dict(super().__getstate__())
        state.pop("_runtime", None)
        model = state.get("model_")
        if model is not None and any(p.device.type != "cpu" for p in
                                     model.parameters()):
            state["model_"] = deepcopy(model).to("cpu")
        return state

    def __getstate__(self):
        """The state as plain data (skops): the weights as numpy arrays.

        A fitted torchvision backbone is rebuilt by name on loading, so
        ``skops.io.load`` needs only this class trusted. A backbone given as
        your own ``nn.Module`` (or ``weights`` as a state dict) cannot be
        stored without trusting torch's types: this raises a ``TypeError``;
        save such an estimator with pickle or joblib.
        """
        return plain_state(self._pickle_state())

    def _restore_state(self, state):
        super()._restore_state(restore_state(state))
