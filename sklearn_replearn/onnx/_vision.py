"""ONNX converter of PretrainedCNNFeatures: uint8 images in, features out.

The graph takes images as ``transform`` takes uint8 arrays, ``(N, H, W, C)``
with the height, width and channels of the sample given to ``to_onnx``, and
holds what ``transform`` does to them: the channel fix (alpha dropped, grey
replicated), the resize (with torchvision's antialiasing, rounded back to
uint8 values after each of its two passes, as torchvision's uint8 resize
does; its fixed-point weights still round about 1% of the pixels the other
way, by one grey level), the centre crop, the
scaling to [0, 1] and the normalisation, then the backbone up to ``layer``
and its ``pooling``. The whole is one torch module exported by torch's
exporter. Batch norms stay unfolded (ONNX Runtime fuses them itself) and the
graph computes in float32 (``transform`` may use bfloat16 on CPUs with
native support: compare with ``autocast=False``).
"""

from copy import deepcopy

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

# The estimator's internals this converter relies on (one place).
from ..vision._layers import cut_at, pool_features
from ._graph import embed_graph, export_module, export_opset

__all__ = ["convert_cnn", "cnn_shape", "image_module"]

_MODES = {InterpolationMode.BILINEAR: "bilinear",
          InterpolationMode.BICUBIC: "bicubic",
          InterpolationMode.NEAREST: "nearest"}


class _ImageFeatures(nn.Module):
    """uint8 ``(N, H, W, C)`` images -> pooled features, as ``transform``."""

    def __init__(self, features, pooling, prefix_tokens, preprocess, image_hwc):
        super().__init__()
        self.features = features
        self.pooling = pooling
        self.prefix_tokens = prefix_tokens
        height, width, channels = image_hwc
        preprocess.check_channels(channels, "X_sample")
        wanted = preprocess.in_channels
        self.keep = (channels - 1 if channels in (2, 4) and wanted != channels
                     else channels)
        self.replicate = wanted == 3 and self.keep == 1
        probe = torch.zeros(1, 1, height, width, dtype=torch.uint8)
        resized = TF.resize(probe, preprocess._resize_arg((height, width)),
                            interpolation=preprocess.interpolation,
                            antialias=preprocess.antialias).shape[-2:]
        self.size = tuple(int(s) for s in resized)
        mode = _MODES.get(preprocess.interpolation)
        if self.size != (height, width) and mode is None:
            raise ValueError(
                f"interpolation {preprocess.interpolation} cannot be exported; "
                "resize the images to the network's input size beforehand "
                f"(X_sample of height and width {self.size})."
            )
        self.mode = mode
        self.antialias = bool(preprocess.antialias) and mode != "nearest"
        self.crop = None
        if preprocess.crop_size is not None:
            crop_h, crop_w = preprocess.crop_size
            if crop_h > self.size[0] or crop_w > self.size[1]:
                raise ValueError(
                    f"The centre crop {tuple(preprocess.crop_size)} is larger than "
                    f"the resized images {self.size}, which transform pads; "
                    "padding is not exported: pass larger images."
                )
            top = int(round((self.size[0] - crop_h) / 2.0))
            left = int(round((self.size[1] - crop_w) / 2.0))
            self.crop = (top, top + crop_h, left, left + crop_w)
        mean = preprocess.mean
        self.register_buffer("mean", None if mean is None else
                             torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", None if mean is None else
                             torch.tensor(preprocess.std).view(1, -1, 1, 1))

    def _resized(self, x, size):
        align = None if self.mode == "nearest" else False
        x = F.interpolate(x, size=size, mode=self.mode, antialias=self.antialias,
                          align_corners=align)
        return x.round().clamp(0.0, 255.0)

    def forward(self, images):
        x = images.permute(0, 3, 1, 2)[:, :self.keep].to(torch.float32)
        # torchvision resizes uint8 images as Pillow does: the width, then
        # the height, each pass rounded to uint8 values.
        height, width = x.shape[-2:]
        if self.size[1] != width:
            x = self._resized(x, (height, self.size[1]))
        if self.size[0] != height:
            x = self._resized(x, self.size)
        if self.crop is not None:
            top, bottom, left, right = self.crop
            x = x[:, :, top:bottom, left:right]
        x = x / 255.0
        if self.replicate:
            x = x.expand(-1, 3, -1, -1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return pool_features(self.features(x), self.pooling, self.prefix_tokens)


def _check_images(estimator, shape):
    """The sample's (H, W, C), or a clear error for inputs that are not
    uint8 images."""
    if len(shape) != 4 or any(not isinstance(s, int) for s in shape[1:]):
        raise ValueError(
            "PretrainedCNNFeatures is exported for uint8 images of shape (N, "
            "height, width, channels) with a known height, width and channel "
            f"count; the ONNX input has shape {shape}. Pass X_sample as such "
            "an array (e.g. the first images of X)."
        )
    return tuple(shape[1:])


def image_module(estimator, image_hwc):
    """The torch module that the converter exports (see the module's doc)."""
    check_is_fitted(estimator)
    model = deepcopy(estimator.model_).to("cpu", torch.float32).eval()
    features = cut_at(model, estimator._fitted("layer")).eval()
    return _ImageFeatures(features, estimator._fitted("pooling"),
                          getattr(model, "num_prefix_tokens", None),
                          estimator._preprocessor(), image_hwc)


def cnn_shape(operator):
    """skl2onnx shape calculator: uint8 (N, H, W, C) -> (N, n_features)."""
    from skl2onnx.common.data_types import FloatTensorType, UInt8TensorType

    estimator = operator.raw_operator
    check_is_fitted(estimator)
    estimator._check_params_after_fit()
    variable = operator.inputs[0]
    if not isinstance(variable.type, UInt8TensorType):
        raise ValueError(
            "PretrainedCNNFeatures is exported for uint8 images (N, height, "
            f"width, channels); the ONNX input is {variable.type}. Pass uint8 "
            "images as X_sample."
        )
    _check_images(estimator, variable.type.shape)
    operator.outputs[0].type = FloatTensorType(
        [variable.type.shape[0], estimator._n_features_out])


def convert_cnn(scope, operator, container):
    """skl2onnx converter: preprocessing, backbone and pooling in one graph."""
    estimator = operator.raw_operator
    image_hwc = _check_images(estimator, operator.inputs[0].type.shape)
    module = image_module(estimator, image_hwc)
    example = torch.zeros(2, *image_hwc, dtype=torch.uint8)
    what = "PretrainedCNNFeatures backbone"
    model = export_module(module, example, what=what,
                          opset=export_opset(container, what))
    embed_graph(model, scope, container, operator.inputs[0].full_name,
                operator.outputs[0].full_name, prefix="cnn")
