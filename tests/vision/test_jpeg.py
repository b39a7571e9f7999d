"""JPEG files decoded in batches by torchvision.io.decode_jpeg (the GPU path),
exercised on the CPU: the same images and features as the PIL path."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

import sklearn_replearn.vision._batching as batching
from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn.vision._inputs import ItemImages
from sklearn_replearn.vision._jpeg import load_decoded, use_device_decoding

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """JPEG photos, a gray JPEG, a CMYK JPEG, a PNG, a PIL image, an array."""
    folder = tmp_path_factory.mktemp("jpeg")
    photos = list(load_sample_images().filenames)
    rng = np.random.RandomState(0)
    gray = folder / "gray.JPG"
    Image.fromarray(rng.randint(0, 256, (30, 40), np.uint8)).save(gray)
    cmyk = folder / "cmyk.jpeg"
    Image.fromarray(rng.randint(0, 256, (30, 40, 3), np.uint8)).convert(
        "CMYK").save(cmyk)
    png = folder / "image.png"
    Image.fromarray(rng.randint(0, 256, (20, 30, 3), np.uint8)).save(png)
    pil = Image.fromarray(rng.randint(0, 256, (25, 35, 3), np.uint8))
    array = rng.randint(0, 256, (33, 44, 3), np.uint8)
    return [*photos, str(gray), cmyk, str(png), pil, array]


def test_batch_decoding_gives_the_pil_path_images(mixed):
    images = ItemImages(mixed, check_range=True)
    decoded = load_decoded(images, range(len(mixed)), CPU)
    for index, image in enumerate(decoded):
        expected = images.load(index)
        assert image.dtype == torch.uint8
        # On the CPU, decode_jpeg and PIL both use libjpeg-turbo: identical.
        torch.testing.assert_close(image, expected, rtol=0, atol=0)


def test_transform_through_batch_decoding_equals_the_pil_path(mixed,
                                                              monkeypatch):
    features = PretrainedCNNFeatures("resnet18", weights=None, image_size=32,
                                     batch_size=3, random_state=0,
                                     device="cpu").fit(mixed[:1])
    expected = features.transform(mixed)
    # A gray JPEG among RGB images: replicated as when it is alone.
    np.testing.assert_array_equal(features.transform(mixed[2:3])[0], expected[2])
    seen = []

    def always(images, device):
        seen.append(device)
        return True

    monkeypatch.setattr(batching, "use_device_decoding", always)
    np.testing.assert_array_equal(features.transform(mixed), expected)
    assert seen


def test_a_corrupt_jpeg_is_reported_by_its_index(tmp_path, monkeypatch):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    good = list(load_sample_images().filenames)[:1]
    images = ItemImages([*good, str(bad)], check_range=True)
    with pytest.raises(ValueError, match=r"X\[1\].*cannot read"):
        load_decoded(images, [0, 1], CPU)


def test_device_decoding_only_for_jpeg_files_on_cuda(mixed):
    images = ItemImages(mixed, check_range=True)
    assert use_device_decoding(images, torch.device("cuda"))
    assert not use_device_decoding(images, CPU)
    no_jpeg = ItemImages([mixed[-1], mixed[-2]], check_range=True)
    assert not use_device_decoding(no_jpeg, torch.device("cuda"))
