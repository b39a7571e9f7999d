"""Backbone sources of ``PretrainedCNNFeatures``: a registry behind one protocol.

Each source (torchvision, timm, Hugging Face, a user's ``nn.Module``)
implements :class:`BackboneSource`: build with or without weights, the
preprocessing its weights expect, dropping the classifier and pooling,
fine-tunable blocks, and the rebuild that skops loading uses.
``PretrainedCNNFeatures(backbone="<prefix>:<name>")`` asks the source
registered under ``<prefix>``. A new source is one module with a
``BackboneSource`` subclass, plus one ``register_backbone_source`` call (below
for the built-in ones). Optional libraries (timm, transformers) load only when
their source builds a model.
"""

from ._huggingface import HuggingFaceSource
from ._module import ModuleSource
from ._registry import (
    get_backbone_source,
    list_backbone_sources,
    register_backbone_source,
    unregister_backbone_source,
)
from ._source import BackboneSource
from ._timm import TimmSource
from ._torchvision import TorchvisionSource

__all__ = [
    "BackboneSource",
    "get_backbone_source",
    "list_backbone_sources",
    "register_backbone_source",
    "unregister_backbone_source",
]

register_backbone_source("torchvision", TorchvisionSource())
register_backbone_source("timm", TimmSource())
register_backbone_source("hf", HuggingFaceSource())
register_backbone_source("module", ModuleSource())
