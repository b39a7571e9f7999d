"""Representation-learning transformers for scikit-learn, built on PyTorch."""

import sys
import types

from ._version import __version__
from .autoencoder import AutoencoderTransformer, VAETransformer
from .dictionary import DictionaryLearner
from .vision import PretrainedCNNFeatures

__all__ = [
    "AutoencoderTransformer",
    "DictionaryLearner",
    "PretrainedCNNFeatures",
    "VAETransformer",
    "__version__",
]

# Pickles name a class by the module that defined it when they were written.
# Classes that moved are registered under their old module here, so those
# pickles (and joblib/skops files) still load: unpickling imports the old
# module name, finds it in sys.modules and takes the class from it. Each alias
# module holds only the moved names; nothing else can be imported from it.
# A pickled PretrainedCNNFeatures refers to no other class of ours: its
# feature cache is not pickled, and its other state is torch and numpy objects.
_MOVED = {
    # Before the vision/ package (0.1.0.dev0, up to commit fe5dd87).
    "sklearn_replearn._pretrained": {"PretrainedCNNFeatures": PretrainedCNNFeatures},
}
for _old_name, _names in _MOVED.items():
    _alias = types.ModuleType(_old_name, "Alias of moved classes, for old pickles.")
    _alias.__dict__.update(_names)
    sys.modules.setdefault(_old_name, _alias)
del _old_name, _names, _alias
