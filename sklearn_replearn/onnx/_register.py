"""Registration of the converters with skl2onnx, and :func:`to_onnx`."""

import numpy as np

from .. import (
    AutoencoderTransformer,
    DictionaryLearner,
    PretrainedCNNFeatures,
    VAETransformer,
)
from ._dictionary import convert_dictionary, dictionary_shape
from ._neural import convert_neural, neural_shape
from ._vision import cnn_shape, convert_cnn

__all__ = ["register_converters", "to_onnx"]


def register_converters():
    """Register the converters of the four estimators with skl2onnx.

    Importing :mod:`sklearn_replearn.onnx` calls it; calling it again is
    harmless.
    """
    from skl2onnx import update_registered_converter

    update_registered_converter(AutoencoderTransformer,
                                "SklearnReplearnAutoencoderTransformer",
                                neural_shape, convert_neural)
    update_registered_converter(VAETransformer, "SklearnReplearnVAETransformer",
                                neural_shape, convert_neural)
    update_registered_converter(DictionaryLearner, "SklearnReplearnDictionaryLearner",
                                dictionary_shape, convert_dictionary)
    update_registered_converter(PretrainedCNNFeatures,
                                "SklearnReplearnPretrainedCNNFeatures",
                                cnn_shape, convert_cnn)


def _initial_types(X_sample):
    """skl2onnx's input type for X_sample, batch dimension left free."""
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        UInt8TensorType,
    )

    X_sample = np.asarray(X_sample)
    kinds = {np.dtype(np.float32): FloatTensorType,
             np.dtype(np.float64): DoubleTensorType,
             np.dtype(np.uint8): UInt8TensorType}
    kind = kinds.get(X_sample.dtype)
    if kind is None or X_sample.ndim < 2:
        raise ValueError(
            "X_sample must be a float32 or float64 array of shape (n_samples, "
            "n_features), or uint8 images of shape (n_images, height, width, "
            f"channels); got dtype {X_sample.dtype} and shape {X_sample.shape}."
        )
    return [("X", kind([None, *X_sample.shape[1:]]))]


def to_onnx(estimator, X_sample, *, target_opset=None, options=None):
    """Convert a fitted estimator or Pipeline to one ONNX model.

    A thin layer over ``skl2onnx.convert_sklearn``: the input type is taken
    from ``X_sample`` (its dtype and every dimension but the first), and
    classifiers output plain probability arrays (``zipmap=False``) unless
    ``options`` says otherwise.

    Parameters
    ----------
    estimator : estimator or Pipeline
        Fitted; any mix of scikit-learn steps that skl2onnx converts and this
        package's four estimators.
    X_sample : ndarray
        Input of the shape and dtype the model will be given: float32 (or
        float64) rows ``(n_samples, n_features)``, or uint8 images
        ``(n_images, height, width, channels)`` for ``PretrainedCNNFeatures``
        (the graph then takes images of that height and width).
    target_opset : int, default=None
        The ONNX opset; None: skl2onnx's default.
    options : dict, default=None
        skl2onnx's converter options (e.g. ``{id(classifier): {...}}``).

    Returns
    -------
    onnx.ModelProto
        Input ``"X"``; outputs as skl2onnx names them (a transformer's
        ``"variable"``; a classifier's ``"label"`` and ``"probabilities"``).

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn_replearn import AutoencoderTransformer
    >>> from sklearn_replearn.onnx import to_onnx
    >>> X = np.random.RandomState(0).rand(40, 6).astype(np.float32)
    >>> ae = AutoencoderTransformer(n_components=2, max_iter=2, tol=None,
    ...                             random_state=0).fit(X)
    >>> session = ort.InferenceSession(to_onnx(ae, X).SerializeToString())
    >>> session.run(None, {"X": X})[0].shape
    (40, 2)
    """
    from skl2onnx import convert_sklearn

    register_converters()
    if options is None:
        options = _default_options(estimator)
    return convert_sklearn(estimator, initial_types=_initial_types(X_sample),
                           target_opset=target_opset, options=options)


def _default_options(estimator):
    """``zipmap=False`` for every classifier in ``estimator`` (a plain
    probability array, as ``predict_proba`` returns)."""
    from sklearn.base import is_classifier

    steps = [estimator]
    if hasattr(estimator, "steps"):
        steps = [step for _, step in estimator.steps]
    return {id(step): {"zipmap": False} for step in steps if is_classifier(step)}
