"""Hugging Face backbones: ``backbone="hf:<repo id or local folder>"``.

The model is ``transformers.AutoModel`` (built from its config with random
weights for ``weights=None``, else from the folder or the hub cache), wrapped
so that it takes a ``(N, C, H, W)`` batch and returns its last hidden state:
patch tokens ``(N, T, D)`` of a vision transformer, or ``(N, C, H, W)`` maps
of a CNN, then pooled by the estimator's ``pooling``. The preprocessing comes
from the repository's image processor config (``preprocessor_config.json``),
else from the model config's ``image_size`` (and ``image_mean``/``image_std``
when given, ImageNet's otherwise).
"""

import os

from torch import nn
from torchvision.transforms import InterpolationMode

from ..._utils import import_optional, seeded
from ._source import BackboneSource
from ._weights import load_state_dict

__all__ = ["HFImageFeatures", "HuggingFaceSource"]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# PIL resampling filters, as image processors store them.
_RESAMPLE = {0: InterpolationMode.NEAREST, 2: InterpolationMode.BILINEAR,
             3: InterpolationMode.BICUBIC}


def _transformers():
    return import_optional("transformers", feature="backbone='hf:...'", extra="hf")


class HFImageFeatures(nn.Module):
    """A ``transformers`` vision model as a ``(N, C, H, W)`` -> features module.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A vision model whose output has ``last_hidden_state``.

    Attributes
    ----------
    num_prefix_tokens : int
        Tokens before the patch tokens (the class token and any register
        tokens): ``pooling="avg"`` averages the tokens after them,
        ``pooling="cls"`` takes the first.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        config = model.config
        self.num_prefix_tokens = 1 + int(getattr(config, "num_register_tokens", 0)
                                         or 0)

    def fine_tune_blocks(self):
        """``(name, block)`` in forward order for ``fine_tune_layers``.

        The model's children with parameters, each encoder layer on its own
        (``model.encoder.layer.11``, ...); a pooler is left out: the features
        are the last hidden state, which it does not compute.
        """
        yield from _blocks(self.model, "model.", top=True)

    def forward(self, x):
        output = self.model(pixel_values=x)
        hidden = getattr(output, "last_hidden_state", None)
        return output[0] if hidden is None else hidden


def _has_parameters(module):
    return next(module.parameters(), None) is not None


def _blocks(module, prefix, top=False):
    """Parameterised children in order; layer lists (``nn.ModuleList``) and
    the modules holding one (an encoder) are opened into their layers."""
    for name, child in module.named_children():
        if (top and name == "pooler") or not _has_parameters(child):
            continue
        if isinstance(child, nn.ModuleList):
            for index, layer in enumerate(child):
                yield f"{prefix}{name}.{index}", layer
        elif top and any(isinstance(inner, nn.ModuleList)
                         for inner in child.children()):
            yield from _blocks(child, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", child


def _source(name):
    return os.path.expanduser(name)


class HuggingFaceSource(BackboneSource):
    """Hugging Face vision models: ``backbone="hf:<repo id or folder>"``.

    ``weights``: None (random from the config, seeded), ``"DEFAULT"`` (the
    pretrained weights of the folder or the hub cache), or a state dict (or
    its file) of ``AutoModel``'s keys.
    """

    def build(self, name, weights, *, random_state, download=True, verbose=0):
        return _build(name, weights, random_state)

    def preprocessing(self, model, name, weights):
        return _preset(_transformers(), _source(name), model.model.config)

    def drop_classifier(self, model, pooling):
        return None  # no classifier: layer=None keeps the whole model

    def prefix_tokens(self, model):
        return model.num_prefix_tokens

    def fine_tune_blocks(self, model):
        return model.fine_tune_blocks()


def _build(name, weights, random_state):
    """``HFImageFeatures`` around ``transformers.AutoModel`` ``name``."""
    transformers = _transformers()
    source = _source(name)
    try:
        config = transformers.AutoConfig.from_pretrained(source)
    except Exception as exc:
        raise ValueError(
            f"backbone='hf:{name}': no Hugging Face model config found "
            f"({type(exc).__name__}: {exc}). Pass a local folder written by "
            "save_pretrained, or a hub repo id already in the Hugging Face cache "
            "(HF_HOME) or reachable online."
        ) from exc
    if weights == "DEFAULT":
        try:
            model = transformers.AutoModel.from_pretrained(source)
        except Exception as exc:
            raise ValueError(
                f"backbone='hf:{name}' with weights='DEFAULT': the pretrained "
                f"weights could not be loaded ({type(exc).__name__}: {exc}). Put "
                "them in the folder or the Hugging Face cache, or pass "
                "weights=None (random) or a state dict path."
            ) from exc
    else:
        with seeded(random_state):
            model = transformers.AutoModel.from_config(config)
        if weights is not None:
            load_state_dict(model, weights)
    model.eval()
    return HFImageFeatures(model)


def _preset(transformers, source, config):
    """The preprocessing of the image processor config, else of the config."""
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source)
    except Exception:  # noqa: BLE001 -- no processor saved: use the config
        processor = None
    mean = getattr(processor, "image_mean", None) or getattr(
        config, "image_mean", None) or _IMAGENET[0]
    std = getattr(processor, "image_std", None) or getattr(
        config, "image_std", None) or _IMAGENET[1]
    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {})
    if not getattr(processor, "do_center_crop", False):
        crop = {}
    if "shortest_edge" in size:
        resize = int(size["shortest_edge"])
        crop_size = (int(crop["height"]), int(crop["width"])) if crop else None
    elif "height" in size:
        resize = (int(size["height"]), int(size["width"]))
        crop_size = (int(crop["height"]), int(crop["width"])) if crop else None
    else:
        image_size = getattr(config, "image_size", 224)
        if isinstance(image_size, list | tuple):
            resize = tuple(int(s) for s in image_size)
        else:
            resize = (int(image_size),) * 2
        crop_size = None
    return {
        "resize_size": resize,
        "crop_size": crop_size,
        "mean": tuple(float(v) for v in mean),
        "std": tuple(float(v) for v in std),
        "interpolation": _RESAMPLE.get(getattr(processor, "resample", 2),
                                       InterpolationMode.BILINEAR),
        "antialias": True,
    }
