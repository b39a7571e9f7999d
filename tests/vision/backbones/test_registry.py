"""vision/backbones: the registry of backbone sources and their protocol.

Every registered source is checked against the protocol on a small model of
its kind (random weights, offline); a toy source registered in a test shows
that a new source is one class and one registration call.
"""

import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import InterpolationMode

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn.vision.backbones import (
    BackboneSource,
    get_backbone_source,
    list_backbone_sources,
    register_backbone_source,
    unregister_backbone_source,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRESET_KEYS = {"resize_size", "crop_size", "mean", "std", "interpolation",
               "antialias"}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _small_cnn():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Sequential(nn.Linear(16, 8), nn.ReLU()),
            nn.Linear(8, 3))


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit")
    transformers.ViTModel(config).save_pretrained(folder)
    return folder


def _example(prefix, vit_folder_factory):
    """(name, input size) of a small model of each built-in source."""
    if prefix == "torchvision":
        return "resnet18", 64
    if prefix == "timm":
        pytest.importorskip("timm")
        return "resnet18", 64
    if prefix == "hf":
        return str(vit_folder_factory()), 32
    return _small_cnn(), 16


def test_built_in_sources_are_registered():
    assert {"torchvision", "timm", "hf", "module"} <= set(list_backbone_sources())
    assert list_backbone_sources() == sorted(list_backbone_sources())


# timm and Hugging Face build larger models: slow (the full suite checks them).
@pytest.mark.parametrize("prefix", [
    "torchvision", pytest.param("timm", marks=pytest.mark.slow),
    pytest.param("hf", marks=pytest.mark.slow), "module"])
def test_every_source_follows_the_protocol(prefix, request):
    source = get_backbone_source(prefix)
    assert isinstance(source, BackboneSource)
    name, size = _example(prefix, lambda: request.getfixturevalue("vit_folder"))
    model = source.build(name, None, random_state=0, download=False)
    assert isinstance(model, nn.Module)
    if isinstance(name, nn.Module):
        assert model is not name  # the user's module is copied
    # The same seed builds the same weights.
    again = source.build(name, None, random_state=0, download=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, again.state_dict()[key], rtol=0, atol=0)

    preset = source.preprocessing(model, name, None)
    assert preset is None or set(preset) == PRESET_KEYS

    blocks = list(source.fine_tune_blocks(model))
    assert blocks and all(isinstance(block_name, str) and
                          next(block.parameters(), None) is not None
                          for block_name, block in blocks)
    tokens = source.prefix_tokens(model)
    assert tokens is None or (isinstance(tokens, int) and tokens >= 1)

    head = source.drop_classifier(model, "avg")
    assert head is None or isinstance(head, str)
    with torch.no_grad():
        output = model.eval()(torch.rand(2, 3, size, size))
    output = getattr(output, "last_hidden_state", output)
    assert output.shape[0] == 2

    spec = source.rebuild_spec(name, None)
    if spec is None:
        return
    rebuilt = source.rebuild(spec)
    if head is not None:
        rebuilt.set_submodule(head, nn.Identity())
    expected = {key: value.shape for key, value in model.state_dict().items()}
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} \
        == expected


def test_unknown_prefix_and_registration_errors_are_clear():
    with pytest.raises(ValueError, match=r"No backbone source is registered as "
                                         r"'nope'; registered: \[.*'timm'"):
        PretrainedCNNFeatures("nope:model", weights=None).fit(
            np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="already registered as 'timm'"):
        register_backbone_source("timm", BackboneSource())
    with pytest.raises(TypeError, match="BackboneSource instance; got object"):
        register_backbone_source("other", object())
    with pytest.raises(ValueError, match="without ':'"):
        register_backbone_source("a:b", BackboneSource())


class ToySource(BackboneSource):
    """Tiny CNNs by width: ``backbone="toy:<width>"``; rebuilt for skops."""

    def __init__(self):
        self.built = []

    def _model(self, width):
        return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, 5))

    def build(self, name, weights, *, random_state, download=True, verbose=0):
        self.built.append((name, weights))
        torch.manual_seed(int(random_state))
        return self._model(int(name))

    def preprocessing(self, model, name, weights):
        return {"resize_size": 20, "crop_size": 16, "mean": (0.5,) * 3,
                "std": (0.25,) * 3,
                "interpolation": InterpolationMode.BILINEAR,
                "antialias": True}

    def rebuild_spec(self, name, weights):
        return {"width": int(name)}

    def rebuild(self, spec):
        return self._model(spec["width"])


@pytest.fixture
def toy():
    source = register_backbone_source("toy", ToySource())
    yield source
    unregister_backbone_source("toy")


@pytest.mark.slow
def test_a_toy_source_registered_here_drives_the_estimator(toy):
    sio = pytest.importorskip("skops.io")
    X = np.random.RandomState(0).randint(0, 256, (4, 24, 24, 3), np.uint8)
    features = PretrainedCNNFeatures("toy:6", weights=None, random_state=0,
                                     device="cpu", autocast=False).fit(X)
    assert toy.built == [("6", None)]
    # Its preprocessing, and its classifier dropped: the 6 pooled channels.
    assert features.preprocessing_["crop_size"] == (16, 16)
    assert features.preprocessing_["mean"] == (0.5,) * 3
    assert features.head_ == "4"
    Z = features.transform(X)
    assert Z.shape == (4, 6)
    # skops rebuilds it through the registry, trusting only the estimator.
    data = sio.dumps(features)
    trusted = sio.get_untrusted_types(data=data)
    assert trusted == ["sklearn_replearn.vision._estimator.PretrainedCNNFeatures"]
    np.testing.assert_array_equal(sio.loads(data, trusted=trusted).transform(X), Z)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(features)).transform(X),
                                  Z)
    # Fine-tuning trains the source's blocks.
    tuned = PretrainedCNNFeatures("toy:6", weights=None, random_state=0,
                                  fine_tune_layers=1, max_iter=1, device="cpu",
                                  autocast=False).fit(X, [0, 1, 0, 1])
    assert tuned.fine_tuned_blocks_ == ["0"]
