"""A user's own ``torch.nn.Module`` as the backbone (copied, never changed).

Its weights are its current ones, or a state dict (file) loaded into the copy.
A timm model instance keeps timm's preprocessing and classifier reset. skops
cannot rebuild an arbitrary module: such an estimator is saved with pickle or
joblib.
"""

from copy import deepcopy

from ._source import BackboneSource
from ._timm import TimmSource, is_timm_model
from ._weights import load_state_dict, weights_kind

__all__ = ["ModuleSource"]


class ModuleSource(BackboneSource):
    """``backbone=<your nn.Module>``."""

    def build(self, name, weights, *, random_state, download=True, verbose=0):
        kind = weights_kind(weights)
        if kind == "name":
            raise ValueError(
                f"weights={weights!r} looks like a torchvision weights name, but "
                "backbone is your own module; pass a path to a state dict file, a "
                "state dict, or None to keep the module's current weights."
            )
        model = deepcopy(name)
        if kind != "none":
            load_state_dict(model, weights)
        return model

    def preprocessing(self, model, name, weights):
        if is_timm_model(model):
            return TimmSource().preprocessing(model, name, weights)
        return None

    def drop_classifier(self, model, pooling):
        if is_timm_model(model):
            return TimmSource().drop_classifier(model, pooling)
        return super().drop_classifier(model, pooling)

    def pools_its_features(self, model):
        return is_timm_model(model)
