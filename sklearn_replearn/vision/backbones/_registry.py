"""The registry of backbone sources, and how a ``backbone`` finds its source.

``backbone="<prefix>:<name>"`` goes to the source registered under
``<prefix>``; a name without a prefix to ``"torchvision"``; a
``torch.nn.Module`` to ``"module"``. Sources register once, at import of
``vision.backbones``; a user's source registers the same way.
"""

from torch import nn

from ._source import BackboneSource

__all__ = [
    "get_backbone_source",
    "list_backbone_sources",
    "register_backbone_source",
    "resolve_backbone",
    "unregister_backbone_source",
]

_SOURCES = {}
# Where a backbone without a prefix, or a module, goes.
DEFAULT_SOURCE, MODULE_SOURCE = "torchvision", "module"


def register_backbone_source(prefix, source, *, replace=False):
    """Register ``source`` for ``backbone="<prefix>:<name>"``.

    Parameters
    ----------
    prefix : str
        A short name without ``":"``, e.g. ``"open_clip"``.
    source : BackboneSource
        An instance of a :class:`BackboneSource` subclass.
    replace : bool, default=False
        Replace a source already registered under ``prefix``.

    Returns
    -------
    source : BackboneSource
    """
    if not isinstance(prefix, str) or not prefix or ":" in prefix:
        raise ValueError(
            f"prefix={prefix!r} must be a non-empty string without ':', e.g. "
            "'open_clip'.")
    if not isinstance(source, BackboneSource):
        raise TypeError(
            f"source must be a BackboneSource instance; got "
            f"{type(source).__name__}. Subclass "
            "sklearn_replearn.vision.backbones.BackboneSource and implement build.")
    if prefix in _SOURCES and not replace:
        raise ValueError(
            f"A backbone source is already registered as {prefix!r} "
            f"({type(_SOURCES[prefix]).__name__}); pass replace=True to replace "
            "it, or choose another prefix.")
    _SOURCES[prefix] = source
    return source


def unregister_backbone_source(prefix):
    """Remove the source registered as ``prefix``; returns it."""
    if prefix not in _SOURCES:
        raise ValueError(f"No backbone source is registered as {prefix!r}; "
                         f"registered: {list_backbone_sources()}.")
    return _SOURCES.pop(prefix)


def list_backbone_sources():
    """The registered prefixes, sorted."""
    return sorted(_SOURCES)


def get_backbone_source(prefix):
    """The source registered as ``prefix``."""
    try:
        return _SOURCES[prefix]
    except KeyError:
        raise ValueError(
            f"No backbone source is registered as {prefix!r}; registered: "
            f"{list_backbone_sources()}. Register one with "
            "sklearn_replearn.vision.backbones.register_backbone_source."
        ) from None


def resolve_backbone(backbone):
    """``(prefix, name)`` of ``backbone``: its source's prefix, and what that
    source builds (the module itself for a module)."""
    if isinstance(backbone, nn.Module):
        return MODULE_SOURCE, backbone
    prefix, colon, name = backbone.partition(":")
    if not colon:
        return DEFAULT_SOURCE, backbone
    if not name:
        raise ValueError(f"backbone={backbone!r} names no model after {prefix!r}.")
    get_backbone_source(prefix)  # an unknown prefix is a clear error here
    return prefix, name
