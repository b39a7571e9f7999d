"""AutoencoderTransformer: the code of an encoder-decoder network as features."""

from copy import deepcopy
from numbers import Real

from torch import nn

from .._utils._sklearn_compat import Interval, StrOptions
from ..base import _check_unit_interval
from ._base import BaseNeuralTransformer, _checked_layer_sizes
from ._modules import (
    AnchoredDecoder,
    AnchoredEncoder,
    Autoencoder,
    anchor_on_pca,
    make_mlp,
)
from ._modules._autoencoder import SparseAutoencoder
from ._pca_start import pca_start

__all__ = ["AutoencoderTransformer"]


class AutoencoderTransformer(BaseNeuralTransformer):
    """Autoencoder whose bottleneck code is the learned representation.

    Read more in the :ref:`User Guide <guide-autoencoder>`.

    An encoder maps each sample to ``n_components`` numbers (the code) and a
    decoder maps the code back; both are trained together to minimise the
    reconstruction error. ``transform`` returns the code, ``inverse_transform``
    the decoder's output. With ``activation="identity"`` the model spans the
    same subspace as PCA; nonlinear activations let it reconstruct better than
    PCA at the same width. The bottleneck is linear (no activation on the
    code).

    Parameters
    ----------
    n_components : int, default=2
        Width of the code (the output of ``transform``).
    hidden_layer_sizes : array-like of int, default=(128,)
        Widths of the encoder's hidden layers (the decoder mirrors them). For
        ``architecture="conv"``, the channels of each stride-2 convolution.
    activation : {"relu", "tanh", "logistic", "identity", "leaky_relu", "elu", \
"gelu", "silu"}, default="relu"
        Activation between layers (never on the code).
    architecture : {"mlp", "conv"}, default="mlp"
        Fully connected layers, or convolutions over images given as flat rows
        of length ``C * H * W`` (``image_shape`` required).
    image_shape : tuple of int, default=None
        ``(C, H, W)`` of one image, for ``architecture="conv"``.
    encoder, decoder : torch.nn.Module, default=None
        Your own networks, ``(batch, n_features) -> (batch, k)`` and back; they
        replace the built-in ones (both must be given). They are copied at fit,
        so the objects you pass are never trained in place.
    loss : {"mse", "bce"}, default="mse"
        Mean squared error, or binary cross-entropy on the decoder's logits
        (for data in [0, 1]; ``inverse_transform`` then applies a sigmoid).
    denoising : float in [0, 1), default=0.0
        Fraction of input values zeroed at random during training (masking
        noise): a denoising autoencoder. 0 trains a plain autoencoder.
    sparsity : float, default=0.0
        Weight of an L1 penalty on the code: a sparse autoencoder, whose code
        units each respond to few inputs. Each unit's ``|code|`` is weighted
        by the norm of the decoder weights that read it (and, for a deeper
        decoder, by how much its later layers have grown since
        initialisation), so the penalty cannot be dodged by shrinking the code
        and growing the decoder. With a linear decoder
        (``hidden_layer_sizes=()``) the loss is then sparse coding's objective
        with unit-norm atoms, ``2 / n_features * (0.5 * ||x - x_hat||^2 +
        sparsity * ||code||_1)`` per sample: ``sparsity`` means what
        ``DictionaryLearner``'s ``alpha`` means. ``loss_curve_`` includes the
        penalty; ``score`` does not. On whitened natural-image patches,
        ``hidden_layer_sizes=()`` and ``sparsity=1`` give localised, oriented,
        edge-like filters in ``components_`` (Olshausen & Field 1996; see
        ``python -m sklearn_replearn --data patches``), where a plain
        autoencoder's filters stay as spread out as random ones. Too large a
        value shuts the code off (every sample reconstructed as the mean).
        0 trains a plain autoencoder, with no extra work per batch.
    dropout : float in [0, 1), default=0.1
        Probability of zeroing each hidden unit's output during training
        (``nn.Dropout`` after every hidden activation of the built-in MLP,
        encoder and decoder; none on the input or the code). It regularises
        a network with many more weights than training rows, which otherwise
        learns to reconstruct its training rows far better than held-out
        ones. The default was chosen by nested cross-validation on the
        quality suite (``benchmarks/bench_regularisation.py``). Like
        ``hidden_layer_sizes``, it shapes the built-in MLP only: the
        convolutions of ``architecture="conv"`` and your own
        ``encoder``/``decoder`` (put ``nn.Dropout`` in them) are built
        without it. With ``hidden_layer_sizes=()`` there is no hidden unit
        to drop. 0 adds no dropout layer.
    init : {"pca", "random"}, default="pca"
        How the built-in MLP (``architecture="mlp"``, ``loss="mse"``,
        ``sparsity=0``, ``denoising=0``, no ``encoder``/``decoder`` of yours)
        starts (PCA is the optimum of plain reconstruction, not of a
        denoising or sparse one). "pca":
        the encoder and decoder each get a linear path beside the layers of
        ``hidden_layer_sizes`` (code = linear map + hidden layers, the same
        for the decoder), working on X centred and divided by one scale (the
        root mean variance of its features, stored, so ``inverse_transform``
        returns X's units). The linear paths start as PCA's projection and
        reconstruction and the hidden layers' last weights at zero: training
        starts from PCA's reconstruction and refines it. With
        ``hidden_layer_sizes=()`` the model is linear and starts at PCA's
        optimum. "random": a plain MLP with torch's default initialisation.
        Other models always start at random.
    max_iter : int or "auto", default="auto"
        Maximum number of epochs (passes over the data). "auto": the epochs
        that make about 5,000 gradient steps (``ceil(n_train / batch_size)``
        steps per epoch), at least 20 and at most 2,000, so that a small data
        set trains as many steps as a large one; the stopping rule usually
        ends training sooner.
    batch_size : int, default=128
        Samples per minibatch, for training and for batched inference.
    learning_rate : float, default=1e-3
        Optimizer step size.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"} or torch optimizer class, \
default="adam"
        The optimizer.
    weight_decay : float, default=0.0
        L2 penalty passed to the optimizer.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, stop when its loss has not
        improved for ``n_iter_no_change`` epochs and restore the best weights;
        with ``init="pca"``, the PCA start is kept instead when it reconstructs
        the held-out rows better. False trains on all data until the training
        loss plateaus (``tol``) or ``max_iter``; the training error then keeps
        falling long after the held-out error has turned up.
    validation_fraction : float in (0, 1), default=0.1
        Share held out when ``early_stopping=True``.
    n_iter_no_change : int, default=30
        Epochs without a relative improvement of ``tol`` before stopping.
        With the PCA start, the nonlinear refinement can take tens of epochs
        before its validation error passes PCA's: a short patience keeps PCA
        where training on would have beaten it.
    tol : float or None, default=1e-4
        Relative improvement of the monitored loss (validation loss with early
        stopping, else training loss) that counts as progress. None trains
        exactly ``max_iter`` epochs.
    callbacks : list of skorch callbacks, default=None
        Passed to the skorch net (e.g. ``LRScheduler``, ``Checkpoint``); they are
        copied at fit.
    device : str or torch.device, default="auto"
        "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    autocast : bool, default=True
        Run training's forward passes in bfloat16 (``torch.autocast``) where
        the hardware computes it natively: a CPU with AVX512-BF16 or AMX-BF16,
        or a CUDA device that supports bfloat16. Weights, gradients, the loss
        and ``transform`` stay in float32. On other hardware bfloat16 would be
        emulated (slower than float32), so training runs in float32 there;
        ``SKLEARN_REPLEARN_CPU_BF16=0`` (or ``1``) overrides the CPU
        detection. Ignored with an ``accelerator`` (its ``mixed_precision``
        decides).
    accelerator : accelerate.Accelerator, default=None
        Train through Hugging Face Accelerate (skorch's ``AccelerateMixin``):
        mixed precision (``Accelerator(mixed_precision="bf16")``), gradient
        accumulation, and multi-GPU data parallelism when the script is run
        with ``accelerate launch``. The accelerator places the model: leave
        ``device="auto"``. The fitted model is unwrapped, so it pickles and
        clones as usual. Needs the ``scale`` extra.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and noise. torch's global RNG is
        left untouched.
    verbose : int, default=0
        0 silent, 1 a progress bar over epochs, 2 a line per epoch.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when X has string column names.
    n_iter_ : int
        Epochs trained (all ``fit``/``partial_fit`` calls since the last fit).
    loss_curve_ : list of float
        Training loss of each epoch.
    validation_scores_ : list of float
        Minus the validation loss of each epoch (only with early stopping).
    best_validation_score_ : float
        Minus the validation loss of the weights kept (only with early
        stopping): the best of ``validation_scores_``, or the PCA start's
        when that is kept.
    net_ : skorch.NeuralNet
        The trained skorch net.
    module_ : torch.nn.Module
        The trained autoencoder (``net_.module_``).
    components_ : ndarray of shape (n_units, ``n_features_in_``)
        Weights of the encoder's first linear layer, one row per unit (for
        plotting learned filters). Only for encoders whose first layer is
        ``nn.Linear``.

    See Also
    --------
    sklearn.decomposition.PCA : The optimal linear autoencoder.
    VAETransformer : A probabilistic autoencoder that can also generate data.

    References
    ----------
    Hinton, G. E., & Salakhutdinov, R. R. (2006). Reducing the dimensionality of
    data with neural networks. Science, 313(5786), 504-507.

    Vincent, P., Larochelle, H., Bengio, Y., & Manzagol, P.-A. (2008). Extracting
    and composing robust features with denoising autoencoders. ICML.

    Olshausen, B. A., & Field, D. J. (1996). Emergence of simple-cell receptive
    field properties by learning a sparse code for natural images. Nature,
    381(6583), 607-609.

    Le, Q. V., Karpenko, A., Ngiam, J., & Ng, A. Y. (2011). ICA with
    reconstruction cost for efficient overcomplete feature learning. NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_replearn import AutoencoderTransformer
    >>> X = np.random.RandomState(0).rand(50, 8)
    >>> ae = AutoencoderTransformer(n_components=3, max_iter=5, random_state=0)
    >>> ae.fit_transform(X).shape
    (50, 3)
    >>> ae.inverse_transform(ae.transform(X)).shape
    (50, 8)
    """

    _parameter_constraints: dict = {
        **BaseNeuralTransformer._parameter_constraints,
        "loss": [StrOptions({"mse", "bce"})],
        "denoising": [Interval(Real, 0, 1, closed="left")],
        "sparsity": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "init": [StrOptions({"pca", "random"})],
    }

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=(128,),
        activation="relu",
        architecture="mlp",
        image_shape=None,
        encoder=None,
        decoder=None,
        loss="mse",
        denoising=0.0,
        sparsity=0.0,
        dropout=0.1,
        init="pca",
        max_iter="auto",
        batch_size=128,
        learning_rate=1e-3,
        optimizer="adam",
        weight_decay=0.0,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=30,
        tol=1e-4,
        callbacks=None,
        device="auto",
        autocast=True,
        accelerator=None,
        random_state=None,
        verbose=0,
    ):
        self._set_shared_parameters(locals())
        self.loss = loss
        self.denoising = denoising
        self.sparsity = sparsity
        self.dropout = dropout
        self.init = init

    _STRUCTURAL_PARAMETERS = (
        *BaseNeuralTransformer._STRUCTURAL_PARAMETERS, "loss", "denoising",
        "sparsity", "dropout", "init",
    )

    # ---------------------------------------------------------------- hooks
    def _starts_at_pca(self):
        return (self.init == "pca" and self.architecture == "mlp"
                and self.loss == "mse" and self.sparsity == 0
                and self.denoising == 0 and self.encoder is None
                and self.decoder is None)

    def _encoder_and_decoder(self, n_features):
        # Dropout, like the layer widths, shapes the built-in MLP only.
        builtin_mlp = (self.architecture == "mlp" and self.encoder is None
                       and self.decoder is None)
        if not builtin_mlp or (self.dropout == 0 and not self._starts_at_pca()):
            return super()._encoder_and_decoder(n_features)
        hidden = _checked_layer_sizes(self.hidden_layer_sizes)
        k = self.n_components
        encoder_path = make_mlp((n_features, *hidden, k), self.activation,
                                self.dropout)
        decoder_path = make_mlp((k, *hidden[::-1], n_features), self.activation,
                                self.dropout)
        if not self._starts_at_pca():
            return encoder_path, decoder_path
        if not hidden:
            encoder_path = decoder_path = None
        return (AnchoredEncoder(n_features, k, encoder_path),
                AnchoredDecoder(k, n_features, decoder_path))

    def _initialize_module(self, module, X, seed):
        if self._starts_at_pca():
            mean, scale, components = pca_start(X, self.n_components, seed)
            anchor_on_pca(module.encoder, module.decoder, mean, scale, components)
            # The start may reconstruct X almost exactly (n_components close
            # to the rank): explosions count from the loss of predicting the
            # mean, scale**2, not from a first loss of ~0.
            return deepcopy(module.state_dict()), scale**2
        return None, None

    def _after_training(self, module, valid_X, start):
        if start is None or valid_X is None:
            return
        # The PCA start competes with the best trained epoch on the
        # validation rows: the model kept never reconstructs them worse.
        trained = deepcopy(module.state_dict())
        trained_error = self._validation_error(module, valid_X)
        module.load_state_dict(start)
        start_error = self._validation_error(module, valid_X)
        if start_error > trained_error:
            module.load_state_dict(trained)
            return None
        return start_error

    def _validation_error(self, module, X):
        was_training = module.training
        module.eval()
        device = next(module.parameters()).device
        errors = self._batched(
            lambda batch: (module.reconstruct(batch) - batch).pow(2).mean(
                dim=1, keepdim=True), X, 1, device, fixed_shape=True)
        module.train(was_training)
        return float(errors.mean(dtype="float64"))

    def _check_training_values(self, X):
        if self.loss == "bce":
            _check_unit_interval(X, "loss='bce'", "loss='mse'")

    def _make_criterion(self):
        if self.sparsity > 0:
            return None  # the sparse module computes its own loss
        return nn.BCEWithLogitsLoss if self.loss == "bce" else nn.MSELoss

    def _build_module(self, encoder, decoder, n_features):
        output = "sigmoid" if self.loss == "bce" else "identity"
        if self.sparsity > 0:
            return SparseAutoencoder(encoder, decoder, output=output,
                                     masking_noise=self.denoising,
                                     sparsity=float(self.sparsity))
        # Without the penalty: the plain module and the engine's criterion,
        # with no extra work per batch.
        return Autoencoder(encoder, decoder, output=output,
                           masking_noise=self.denoising)

    # ------------------------------------------------------------ attributes
    @property
    def components_(self):
        """Weights of the encoder's first linear layer, shape (n_units, n_features)."""
        module = self.module_
        first_linear = next(
            (layer for layer in module.encoder.modules()
             if isinstance(layer, nn.Linear)),
            None,
        )
        if first_linear is None or first_linear.in_features != self.n_features_in_:
            raise AttributeError(
                "components_ needs an encoder whose first layer is nn.Linear over "
                "the input features; this encoder has none."
            )
        return first_linear.weight.detach().cpu().numpy().copy()
