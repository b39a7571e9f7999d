"""ONNX converters of AutoencoderTransformer and VAETransformer.

``transform`` runs the fitted module's ``encode`` on float32 rows (the code
of an autoencoder, the posterior mean of a VAE) and returns X's float dtype;
nothing else is applied to X. The converter exports ``encode`` with torch's
exporter and embeds it; :func:`decoder_to_onnx` exports ``decode``
(``inverse_transform``) as a model of its own.
"""

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._graph import (
    EXPORT_OPSET,
    embed_graph,
    export_module,
    export_opset,
    float_input,
    output_as_input_type,
)

__all__ = ["convert_neural", "decoder_to_onnx", "neural_shape"]


class _Method(nn.Module):
    """One method of a module (``encode`` or ``decode``) as a module's forward."""

    def __init__(self, module, method):
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, x):
        return getattr(self.module, self.method)(x)


def _fitted_module(estimator):
    """The estimator's fitted module, or a clear error when it is not fitted."""
    check_is_fitted(estimator)
    return estimator.module_


def _exported(estimator, method, width, opset):
    """``estimator.module_.<method>`` exported for ``width`` input columns."""
    module = _Method(_fitted_module(estimator), method)
    example = torch.zeros(2, width)
    what = f"{type(estimator).__name__}'s {method}"
    return export_module(module, example, what=what, opset=opset)


def neural_shape(operator):
    """skl2onnx shape calculator: (N, n_features_in_) -> (N, n_components)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    estimator = operator.raw_operator
    check_is_fitted(estimator)
    # set_params may have changed them since fit, as transform checks.
    estimator._check_params_after_fit()
    _check_width(operator, estimator.n_features_in_)
    kind = (DoubleTensorType if isinstance(operator.inputs[0].type, DoubleTensorType)
            else FloatTensorType)
    n_rows = operator.inputs[0].type.shape[0]
    operator.outputs[0].type = kind([n_rows, estimator._n_features_out])


def _check_width(operator, n_features):
    shape = operator.inputs[0].type.shape
    if len(shape) != 2 or shape[1] not in (None, n_features):
        raise ValueError(
            f"{type(operator.raw_operator).__name__} takes rows of "
            f"{n_features} features; the ONNX input has shape {shape}. Pass "
            f"X_sample of shape (n_samples, {n_features})."
        )


def convert_neural(scope, operator, container):
    """skl2onnx converter: the fitted ``encode`` as the operator's graph."""
    estimator = operator.raw_operator
    opset = export_opset(container, f"{type(estimator).__name__}'s encoder")
    model = _exported(estimator, "encode", estimator.n_features_in_, opset)
    x = float_input(operator, container, scope)
    code = scope.get_unique_variable_name("code")
    embed_graph(model, scope, container, x, code,
                prefix=type(estimator).__name__.lower())
    output_as_input_type(operator, container, scope, code)


def decoder_to_onnx(estimator, *, target_opset=None):
    """The ONNX model of ``inverse_transform``: codes back to the input space.

    Parameters
    ----------
    estimator : AutoencoderTransformer or VAETransformer
        Fitted.
    target_opset : int, default=None
        The ONNX opset (at least 18); None: 18.

    Returns
    -------
    onnx.ModelProto
        Input ``"codes"`` (float32, ``(N, n_components)``), output
        ``"reconstruction"`` (float32, ``(N, n_features_in_)``): the
        decoder's output on the data's scale (a sigmoid applied for
        ``loss="bce"`` or a Bernoulli likelihood), as ``inverse_transform``
        returns it.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn_replearn import AutoencoderTransformer
    >>> from sklearn_replearn.onnx import decoder_to_onnx
    >>> X = np.random.RandomState(0).rand(40, 6).astype(np.float32)
    >>> ae = AutoencoderTransformer(n_components=2, max_iter=2, tol=None,
    ...                             random_state=0).fit(X)
    >>> session = ort.InferenceSession(decoder_to_onnx(ae).SerializeToString())
    >>> session.run(None, {"codes": ae.transform(X)})[0].shape
    (40, 6)
    """
    from onnx import checker

    opset = EXPORT_OPSET if target_opset is None else int(target_opset)
    if opset < EXPORT_OPSET:
        raise ValueError(
            f"decoder_to_onnx exports to ONNX opset {EXPORT_OPSET} or later "
            f"(torch's exporter); got target_opset={target_opset}."
        )
    model = _exported(estimator, "decode", estimator._n_features_out, opset)
    graph = model.graph
    _rename(graph, graph.input[0].name, "codes")
    _rename(graph, graph.output[0].name, "reconstruction")
    checker.check_model(model)
    return model


def _rename(graph, old, new):
    """Rename the value ``old`` of ``graph`` (its nodes, inputs and outputs)."""
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name == old:
                node.input[position] = new
        for position, name in enumerate(node.output):
            if name == old:
                node.output[position] = new
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new
