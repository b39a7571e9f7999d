"""The protocol every backbone source implements: :class:`BackboneSource`.

A source is one kind of backbone (torchvision's models, timm's, Hugging
Face's, a user's module). ``PretrainedCNNFeatures`` asks it, and nothing else,
how to build a backbone with or without weights, which preprocessing the
weights expect, how to drop the classifier and pool the features, which
blocks fine-tuning trains, and how skops rebuilds the architecture. The
defaults below suit any plain ``torch.nn.Module``; a source overrides what its
models do differently.
"""

from torch import nn

from .._layers import drop_last_linear

__all__ = ["BackboneSource", "first_conv_channels", "parameterised_blocks"]


class BackboneSource:
    """How one kind of backbone is built, preprocessed, cut, tuned and rebuilt.

    Subclass it and register an instance with
    :func:`~sklearn_replearn.vision.backbones.register_backbone_source`; then
    ``PretrainedCNNFeatures(backbone="<prefix>:<name>")`` uses it. Only
    :meth:`build` is required.
    """

    def build(self, name, weights, *, random_state, download=True, verbose=0):
        """The backbone ``name`` with ``weights``.

        Parameters
        ----------
        name : str or torch.nn.Module
            What follows the source's prefix in ``backbone`` (the module
            itself for the module source).
        weights : str, path-like, dict or None
            The estimator's ``weights``: None builds random weights (seeded by
            ``random_state``); otherwise as the source documents.
        random_state : int, RandomState instance or None
        download : bool, default=True
            Whether missing pretrained weights may be downloaded.
        verbose : int, default=0

        Returns
        -------
        model : torch.nn.Module
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build")

    def pools_its_features(self, model):
        """Whether the model pools its own penultimate features as the
        estimator's ``pooling`` says (after :meth:`drop_classifier`), so that
        any ``pooling`` applies at ``layer=None``. False by default: there the
        features are already one vector per image, and a ``pooling`` other
        than the default is refused rather than ignored."""
        return False

    def preprocessing(self, model, name, weights):
        """The weights' preprocessing, or None (then ImageNet's).

        Returns
        -------
        dict or None
            ``resize_size``, ``crop_size``, ``mean``, ``std``,
            ``interpolation`` (a torchvision ``InterpolationMode``) and
            ``antialias``.
        """
        return None

    def drop_classifier(self, model, pooling):
        """Drop ``model``'s classifier, in place, for ``layer=None``.

        Returns the classifier's module name, or None when it has none. By
        default the last ``nn.Linear`` becomes ``nn.Identity``.
        """
        return drop_last_linear(model)

    def prefix_tokens(self, model):
        """Tokens before the patch tokens in ``model``'s outputs (a vision
        transformer's class and register tokens), or None: pooling a
        ``(N, T, D)`` output then treats every token alike."""
        return getattr(model, "num_prefix_tokens", None)

    def fine_tune_blocks(self, model):
        """``(name, block)`` in forward order; ``fine_tune_layers=k`` trains
        the last k of those the features use."""
        return parameterised_blocks(model)

    def rebuild_spec(self, name, weights):
        """Plain data (str, numbers, dicts) from which :meth:`rebuild` builds
        the architecture again, or None when it cannot (skops then refuses
        to save the estimator; pickle still can)."""
        return None

    def rebuild(self, spec):
        """The architecture of :meth:`rebuild_spec`, with any weights (skops
        loads the saved ones into it)."""
        raise NotImplementedError(f"{type(self).__name__} cannot rebuild backbones")


def parameterised_blocks(module, prefix=""):
    """Yield ``(name, block)``: parameterised children in registration order.

    ``nn.Sequential`` and ``nn.ModuleList`` containers are opened (recursively),
    so ResNet's ``layer4`` gives its residual blocks ``layer4.0``, ``layer4.1``
    and DenseNet's ``features`` its dense blocks and transitions.
    """
    for name, child in module.named_children():
        full_name = f"{prefix}{name}"
        if type(child) in (nn.Sequential, nn.ModuleList):
            yield from parameterised_blocks(child, full_name + ".")
        elif next(child.parameters(), None) is not None:
            yield full_name, child


def first_conv_channels(model):
    """Input channels of the first ``nn.Conv2d`` of ``model``, or None."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None
