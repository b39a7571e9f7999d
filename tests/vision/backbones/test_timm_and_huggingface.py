"""timm and Hugging Face backbones, offline: models built from their configs
with random weights, saved with the libraries' own functions, loaded back."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn._extract import main as extract_main
from sklearn_replearn.vision._compile import CompiledOrEager

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).randint(0, 256, (6, 40, 50, 3), np.uint8)


def _estimator(backbone, **params):
    params = {"weights": None, "random_state": 0, "batch_size": 4,
              "device": "cpu", "autocast": False, **params}
    return PretrainedCNNFeatures(backbone, **params)


# -------------------------------------------------------------------- timm
@pytest.mark.slow
def test_timm_backbone_uses_timms_preprocessing_and_pre_logits(images):
    timm = pytest.importorskip("timm")
    features = _estimator("timm:resnet18").fit(images[:1])
    # timm's resnet18 config: crop 224 of 224 / 0.95, bicubic, ImageNet stats.
    config = features.preprocessing_
    assert config["resize_size"] == 235 and config["crop_size"] == (224, 224)
    assert config["interpolation"].value == "bicubic"
    assert features.head_ == "fc"
    X_new = features.transform(images)
    assert X_new.shape == (6, 512)
    # The same as timm's own pre-logits of the model with the same weights.
    model = timm.create_model("resnet18", pretrained=False)
    model.load_state_dict(features.model_.state_dict(), strict=False)
    batch = features._preprocessor().finish(features._preprocessor().prepare(
        torch.from_numpy(images).permute(0, 3, 1, 2), "X"))
    with torch.inference_mode():
        expected = model.eval().forward_head(model.forward_features(batch),
                                             pre_logits=True)
    np.testing.assert_allclose(X_new, expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_timm_pipeline_weights_file_instance_batches_and_pickle(images, tmp_path):
    timm = pytest.importorskip("timm")
    y = np.array([0, 1, 0, 1, 0, 1])
    pipe = Pipeline([
        ("features", _estimator("timm:convnext_atto", image_size=32)),
        ("classifier", LogisticRegression(max_iter=200)),
    ]).fit(images, y)
    assert pipe.predict(images).shape == (6,)
    features = pipe[0]
    X_new = features.transform(images)
    assert X_new.shape == (6, 320)
    # One image alone equals the same image in a batch.
    np.testing.assert_array_equal(features.transform(images[2:3])[0], X_new[2])
    # A state dict file and a model instance give the same features.
    model = timm.create_model("convnext_atto", pretrained=False)
    model.load_state_dict(features.model_.state_dict(), strict=False)
    torch.save(model.state_dict(), tmp_path / "atto.pth")
    by_file = _estimator("timm:convnext_atto", image_size=32,
                         weights=tmp_path / "atto.pth").fit(images)
    np.testing.assert_array_equal(by_file.transform(images), X_new)
    by_instance = _estimator(model, image_size=32).fit(images)
    np.testing.assert_array_equal(by_instance.transform(images), X_new)
    again = pickle.loads(pickle.dumps(features))
    np.testing.assert_array_equal(again.transform(images), X_new)


@pytest.mark.slow
def test_timm_vision_transformer_pooling_cls_and_mean(images):
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False,
                              img_size=32, patch_size=8)
    tokens = {}
    for pooling in ("cls", "avg", None):
        features = _estimator(model, image_size=32, pooling=pooling).fit(images)
        tokens[pooling] = features.transform(images)
    assert tokens["cls"].shape == tokens["avg"].shape == (6, 192)
    assert tokens[None].shape == (6, 17 * 192)  # all tokens, flattened
    flat = tokens[None].reshape(6, 17, 192)
    np.testing.assert_allclose(tokens["cls"], flat[:, 0], rtol=1e-5, atol=1e-5)
    # timm's "avg" pooling of a ViT averages the patch tokens, after the norm.
    assert not np.allclose(tokens["avg"], tokens["cls"])
    with pytest.raises(ValueError, match="class token.*has none"):
        _estimator("timm:resnet18", pooling="cls").fit(images)


def test_timm_unknown_name_and_missing_weights_are_clear(images, monkeypatch):
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="not a timm model"):
        _estimator("timm:no_such_net").fit(images)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(ValueError, match="could not load its pretrained weights"):
        _estimator("timm:resnet18", weights="DEFAULT").fit(images)


# ------------------------------------------------------------ Hugging Face
@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit")
    transformers.ViTModel(config).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32},
                                   image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_hf_vit_features_are_its_class_token_or_mean_patch_token(images,
                                                                 vit_folder):
    transformers = pytest.importorskip("transformers")
    backbone = f"hf:{vit_folder}"
    cls = _estimator(backbone, weights="DEFAULT", pooling="cls").fit(images)
    mean = _estimator(backbone, weights="DEFAULT", pooling="mean").fit(images)
    # The image processor's config: 32 x 32, mean and std 0.5.
    assert cls.preprocessing_["resize_size"] == (32, 32)
    assert cls.preprocessing_["mean"] == (0.5, 0.5, 0.5)
    assert cls.head_ is None
    model = transformers.ViTModel.from_pretrained(vit_folder).eval()
    batch = cls._preprocessor().finish(cls._preprocessor().prepare(
        torch.from_numpy(images).permute(0, 3, 1, 2), "X"))
    with torch.inference_mode():
        hidden = model(pixel_values=batch).last_hidden_state.numpy()
    np.testing.assert_allclose(cls.transform(images), hidden[:, 0], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(mean.transform(images), hidden[:, 1:].mean(1),
                               rtol=1e-4, atol=1e-5)
    # weights=None: random weights from the config (seeded), not the saved ones.
    random = _estimator(backbone, pooling="cls").fit(images)
    assert not np.allclose(random.transform(images), cls.transform(images))


@pytest.mark.slow
def test_hf_pipeline_paths_batches_pickle_and_extract(images, vit_folder,
                                                       tmp_path):
    pytest.importorskip("transformers")
    backbone = f"hf:{vit_folder}"
    y = np.array([0, 1, 0, 1, 0, 1])
    pipe = Pipeline([
        ("features", _estimator(backbone, weights="DEFAULT")),
        ("classifier", LogisticRegression(max_iter=200)),
    ]).fit(images, y)
    features = pipe[0]
    X_new = features.transform(images)
    assert X_new.shape == (6, 32)
    np.testing.assert_array_equal(features.transform(images[3:4])[0], X_new[3])
    paths = []
    for index, image in enumerate(images):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(image).save(paths[-1])
    np.testing.assert_array_equal(features.transform(paths), X_new)
    again = pickle.loads(pickle.dumps(features))
    np.testing.assert_array_equal(again.transform(images), X_new)
    out = tmp_path / "features.npy"
    extract_main([*paths, "--backbone", backbone, "--weights", "DEFAULT",
                  "--batch-size", "4", "--out", str(out), "--device", "cpu"])
    assert np.load(out).shape == (6, 32)
    # A layer of a model torch.fx cannot trace: a clear error.
    with pytest.raises(ValueError, match="layer needs torch.fx"):
        _estimator(backbone, layer="model.encoder").fit(images)


def test_hf_missing_folder_is_a_clear_error(images, tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(ValueError, match="no Hugging Face model config"):
        _estimator(f"hf:{tmp_path / 'missing'}").fit(images)
    assert os.path.isdir(tmp_path)


@pytest.mark.slow
def test_fine_tuning_hf_and_timm_trains_only_their_last_blocks(images,
                                                               vit_folder):
    pytest.importorskip("timm")
    y = np.arange(6) % 2
    for backbone, blocks in [(f"hf:{vit_folder}",
                              ["model.layers.1", "model.layernorm"]),
                             ("timm:resnet18", ["layer4.0", "layer4.1"])]:
        frozen = _estimator(backbone, image_size=32).fit(images)
        tuned = _estimator(backbone, image_size=32, fine_tune_layers=2,
                           max_iter=2).fit(images, y)
        assert tuned.fine_tuned_blocks_ == blocks, tuned.fine_tuned_blocks_
        before, after = frozen.model_.state_dict(), tuned.model_.state_dict()
        changed = {name for name in before
                   if not torch.equal(before[name], after[name])}
        assert changed, backbone
        assert all(name.startswith(tuple(blocks)) for name in changed), changed
        assert tuned.transform(images).shape == frozen.transform(images).shape


# ------------------------------------------------- compiled timm and HF models
@pytest.mark.slow
@pytest.mark.parametrize("source", ["timm", "hf"])
def test_compiled_timm_and_hf_backbones_agree_with_eager(images, vit_folder,
                                                        source):
    """compile=True freezes and compiles timm and transformers models too:
    the same features to float32 rounding, batch-invariant, pickled without
    the compiled module."""
    pytest.importorskip("timm" if source == "timm" else "transformers")
    backbone = "timm:resnet18" if source == "timm" else f"hf:{vit_folder}"
    params = {"image_size": 32} if source == "timm" else {}
    eager = _estimator(backbone, **params).fit(images[:1])
    compiled = _estimator(backbone, compile=True, **params).fit(images[:1])
    expected, out = eager.transform(images), compiled.transform(images)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    # Compiled indeed, not the eager fallback.
    (module,) = [module for module in compiled._runtime.values()
                 if isinstance(module, CompiledOrEager)]
    assert module.compiled is not None and not module.failed
    # One image alone gets the features it gets in a batch.
    np.testing.assert_array_equal(compiled.transform(images[4:5]), out[4:5])
    restored = pickle.loads(pickle.dumps(compiled))
    assert "_runtime" not in restored.__dict__
    np.testing.assert_allclose(restored.transform(images), out, rtol=1e-4,
                               atol=1e-4)
