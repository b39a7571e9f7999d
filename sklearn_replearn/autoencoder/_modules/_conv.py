"""Convolutional encoder/decoder pairs for images given as flat rows."""

import math

from torch import nn

from ._layers import make_activation

__all__ = ["make_conv_decoder", "make_conv_encoder"]


def _downsampled(size):
    """Spatial size after a 3x3 convolution with stride 2 and padding 1."""
    return (size - 1) // 2 + 1


def _feature_map_shapes(image_shape, channels):
    """Shapes (C, H, W) after each strided convolution, input shape first."""
    shapes = [tuple(image_shape)]
    for n_channels in channels:
        _, height, width = shapes[-1]
        shapes.append((n_channels, _downsampled(height), _downsampled(width)))
    return shapes


def make_conv_encoder(image_shape, channels, n_components, activation):
    """Flat rows -> images -> strided 3x3 convolutions -> linear code.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, H, W)`` of one image; rows of X are ``C * H * W`` values in
        C-order (what ``images.reshape(n, -1)`` gives).
    channels : sequence of int
        Output channels of each stride-2 convolution.
    n_components : int
        Width of the code.
    activation : str
        Activation between layers.
    """
    shapes = _feature_map_shapes(image_shape, channels)
    layers = [nn.Unflatten(1, tuple(image_shape))]
    for (c_in, _, _), (c_out, _, _) in zip(shapes[:-1], shapes[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                   make_activation(activation)]
    layers += [nn.Flatten(), nn.Linear(math.prod(shapes[-1]), n_components)]
    return nn.Sequential(*layers)


def make_conv_decoder(image_shape, channels, n_components, activation):
    """The mirror of :func:`make_conv_encoder`: code -> images -> flat rows."""
    shapes = _feature_map_shapes(image_shape, channels)
    layers = [
        nn.Linear(n_components, math.prod(shapes[-1])),
        make_activation(activation),
        nn.Unflatten(1, shapes[-1]),
    ]
    reversed_shapes = shapes[::-1]
    for index, ((c_in, h_in, w_in), (c_out, h_out, w_out)) in enumerate(
        zip(reversed_shapes[:-1], reversed_shapes[1:])
    ):
        # A stride-2 transposed convolution gives 2 * size - 1 (+ output_padding).
        padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
        layers.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1,
                                         output_padding=padding))
        if index < len(reversed_shapes) - 2:
            layers.append(make_activation(activation))
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)
