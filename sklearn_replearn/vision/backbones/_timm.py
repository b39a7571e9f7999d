"""timm backbones: ``backbone="timm:<model name>"``.

The model comes from ``timm.create_model`` (random, its default pretrained
tag, or a state dict file), its preprocessing from timm's own data config
(``resolve_data_config``: input size, crop fraction, interpolation, mean and
std), and ``layer=None`` features from timm's classifier reset
(``reset_classifier(0, global_pool)``): the pooled pre-logits, with the
estimator's ``pooling`` as timm's global pooling (for vision transformers
``"cls"``: the class token, ``"avg"``/``"mean"``: the mean of patch tokens).
"""

import math

from torchvision.transforms import InterpolationMode

from ..._utils import import_optional, seeded
from ._source import BackboneSource
from ._weights import load_state_dict

__all__ = ["TimmSource", "is_timm_model"]

_INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
# The estimator's pooling as timm's global_pool.
_GLOBAL_POOL = {"avg": "avg", "mean": "avg", "max": "max", "cls": "token", None: ""}


def _timm():
    return import_optional("timm", feature="backbone='timm:...'", extra="timm")


def is_timm_model(model):
    """Whether ``model`` is a timm model instance (its classifier reset and
    data config are timm's)."""
    return hasattr(model, "reset_classifier") and hasattr(model, "pretrained_cfg")


class TimmSource(BackboneSource):
    """timm's models: ``backbone="timm:<model name>"``."""

    def build(self, name, weights, *, random_state, download=True, verbose=0):
        return _build(name, weights, random_state)

    def preprocessing(self, model, name, weights):
        return timm_preset(model)

    def drop_classifier(self, model, pooling):
        return timm_head(model, pooling)

    def pools_its_features(self, model):
        return True  # reset_classifier pools as the estimator's pooling says


def _build(name, weights, random_state):
    """Build timm model ``name`` with ``weights``.

    ``weights``: None (random, seeded), ``"DEFAULT"`` (timm's default
    pretrained tag, from its cache or downloaded by timm), a tag
    (``"in1k"``: ``name.tag``), or a state dict or its file.
    """
    timm = _timm()
    if not timm.is_model(name.split(".")[0]):
        raise ValueError(
            f"backbone='timm:{name}' is not a timm model; see timm.list_models() "
            "(e.g. 'timm:resnet18', 'timm:convnext_tiny', "
            "'timm:vit_small_patch14_dinov2')."
        )
    is_tag = isinstance(weights, str) and (weights == "DEFAULT" or (
        "/" not in weights and "." not in weights and not weights.endswith("pt")))
    if is_tag:
        full_name = name if weights == "DEFAULT" else f"{name}.{weights}"
        try:
            # Seeded too: any part the checkpoint lacks starts the same way.
            with seeded(random_state):
                model = timm.create_model(full_name, pretrained=True)
        except Exception as exc:
            raise ValueError(
                f"backbone='timm:{name}' with weights={weights!r}: timm could not "
                f"load its pretrained weights ({type(exc).__name__}: {exc}). On a "
                "machine without network access, put them in the Hugging Face "
                "cache (HF_HOME) beforehand, or pass weights='/path/to/state_dict"
                ".pth' or weights=None."
            ) from exc
    else:
        with seeded(random_state):
            model = timm.create_model(name, pretrained=False)
        if weights is not None:
            load_state_dict(model, weights)
    return model


def timm_preset(model):
    """The preprocessing of timm's data config for ``model``."""
    timm = _timm()
    config = timm.data.resolve_data_config({}, model=model)
    crop = int(config["input_size"][-1])
    crop_pct = float(config.get("crop_pct") or 1.0)
    return {
        "resize_size": int(math.floor(crop / crop_pct)),
        "crop_size": crop,
        "mean": tuple(float(v) for v in config["mean"]),
        "std": tuple(float(v) for v in config["std"]),
        "interpolation": _INTERPOLATION.get(config.get("interpolation"),
                                            InterpolationMode.BILINEAR),
        "antialias": True,
    }


def timm_head(model, pooling):
    """Drop timm ``model``'s classifier, pooling as ``pooling``; its name.

    ``reset_classifier`` keeps what timm puts between the last map and the
    classifier (ConvNeXt's norm, a ViT's final norm), which dropping the last
    ``nn.Linear`` alone would too, and it sets the pooling timm's way.
    """
    global_pool = _GLOBAL_POOL[pooling]
    is_transformer = getattr(model, "num_prefix_tokens", None) is not None
    if global_pool == "token" and not is_transformer:
        raise ValueError(
            f"pooling='cls' takes a vision transformer's class token, but "
            f"{type(model).__name__} has none; use pooling='avg', 'max' or None."
        )
    head = model.pretrained_cfg.get("classifier") or None
    try:
        model.reset_classifier(0, global_pool)
    except Exception as exc:
        raise ValueError(
            f"pooling={pooling!r} is not supported by timm's "
            f"{type(model).__name__} ({type(exc).__name__}: {exc}); try "
            "pooling='avg'."
        ) from exc
    return head
