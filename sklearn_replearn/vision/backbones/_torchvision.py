"""torchvision's classification models: ``backbone="resnet18"`` (or
``"torchvision:resnet18"``).

Named weights (``"DEFAULT"``, ``"IMAGENET1K_V1"``) come from torch's hub cache,
downloaded on first use with a checked hash (``_download``), and give the
preprocessing they were trained with; skops rebuilds the architecture by name.
"""

import difflib
import os

from ..._utils import seeded
from ._download import cached_weights_file
from ._source import BackboneSource
from ._weights import load_state_dict, safe_load, weights_kind

__all__ = ["TorchvisionSource"]


def _classification_models():
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _named_weights(name, weights):
    """The torchvision weights enum member ``weights`` names for ``name``."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    try:
        return enum.verify(weights)
    except KeyError:
        names = ", ".join(repr(member) for member in enum.__members__)
        raise ValueError(
            f"weights={weights!r} is not a weights name of {name!r}; valid "
            f"names: {names}. Or pass a path to a state dict file, or None."
        ) from None


class TorchvisionSource(BackboneSource):
    """torchvision's classification models, by name."""

    def _check_name(self, name):
        models = _classification_models()
        if name not in models:
            close = difflib.get_close_matches(name, models, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"backbone={name!r} is not a torchvision classification model.{hint} "
                "Valid names: torchvision.models.list_models(module=torchvision."
                f"models) ({len(models)} models, e.g. 'resnet18', 'resnet50', "
                "'vgg16', 'densenet121'); or pass your own torch.nn.Module."
            )

    def build(self, name, weights, *, random_state, download=True, verbose=0):
        import torchvision

        self._check_name(name)
        kind = weights_kind(weights)
        if kind == "name":
            resolved = _named_weights(name, weights)
            cache_file, downloaded = cached_weights_file(
                resolved, name, weights, download=download, verbose=verbose)
            # Refuse unsafe pickles before torchvision (which does not pass
            # weights_only=True) reads the same cached file.
            try:
                safe_load(cache_file)
            except ValueError as exc:
                if not downloaded:
                    raise
                os.remove(cache_file)  # a refused download leaves nothing behind
                raise ValueError(
                    f"The file downloaded from {resolved.url} was refused and "
                    f"removed from the cache: {exc}") from exc
            return torchvision.models.get_model(name, weights=resolved)
        with seeded(random_state):
            model = torchvision.models.get_model(name, weights=None)
        if kind != "none":
            load_state_dict(model, weights)
        return model

    def preprocessing(self, model, name, weights):
        if weights_kind(weights) != "name":
            return None
        transforms = _named_weights(name, weights).transforms()
        try:
            return {
                "resize_size": int(transforms.resize_size[0]),
                "crop_size": int(transforms.crop_size[0]),
                "mean": tuple(float(v) for v in transforms.mean),
                "std": tuple(float(v) for v in transforms.std),
                "interpolation": transforms.interpolation,
                "antialias": bool(transforms.antialias),
            }
        except AttributeError:  # pragma: no cover - classification weights have them
            return None

    def rebuild_spec(self, name, weights):
        """``{"name": ..., "kwargs": {...}}``: the constructor arguments that
        named weights set (their number of classes, and ViT's image size), so
        that ``get_model(name, weights=None, **kwargs)`` gives the same
        architecture."""
        import torchvision

        kwargs = {}
        if isinstance(weights, str):
            try:
                resolved = torchvision.models.get_model_weights(name).verify(weights)
            except (KeyError, ValueError):
                resolved = None  # a path: the default architecture (as at fit)
            if resolved is not None:
                kwargs["num_classes"] = len(resolved.meta["categories"])
                if name.startswith("vit_"):
                    kwargs["image_size"] = int(resolved.meta["min_size"][0])
                if name in ("inception_v3", "googlenet"):
                    # Their builders change the architecture for named weights:
                    # inputs re-normalised inside the model, and GoogLeNet's
                    # auxiliary heads removed after loading.
                    kwargs["transform_input"] = True
                    kwargs["aux_logits"] = name == "inception_v3"
        return {"name": name, "kwargs": kwargs}

    def rebuild(self, spec):
        import torchvision

        name, kwargs = spec.get("name"), spec.get("kwargs")
        models = torchvision.models.list_models(module=torchvision.models)
        if name not in models:
            raise ValueError(
                f"it names the backbone {name!r}, which is not a torchvision "
                f"classification model of this installation (torchvision "
                f"{torchvision.__version__})")
        if not isinstance(kwargs, dict):
            raise ValueError(f"its rebuild arguments for {name!r} are {kwargs!r}, "
                             "not a dict")
        return torchvision.models.get_model(name, weights=None, **kwargs)

