"""ONNX export: skl2onnx converters for the four estimators.

Read more in the :ref:`User Guide <guide-onnx>`.

Importing this module registers the converters with skl2onnx, so that
``skl2onnx.to_onnx`` converts a ``Pipeline`` holding them into one ONNX
graph; :func:`to_onnx` does so with the input type read from a sample.
Needs the ``onnx`` extra (``skl2onnx``, ``onnx``, ``onnxruntime``,
``onnxscript``).
"""

from .._utils._optional import import_optional

import_optional("onnx", feature="ONNX export", extra="onnx")
import_optional("skl2onnx", feature="ONNX export", extra="onnx")
import_optional("onnxscript", feature="ONNX export", extra="onnx")
# Every exported graph is checked in ONNX Runtime before it is embedded.
import_optional("onnxruntime", feature="ONNX export", extra="onnx")

from ._neural import decoder_to_onnx  # noqa: E402
from ._register import register_converters, to_onnx  # noqa: E402

register_converters()

__all__ = ["decoder_to_onnx", "register_converters", "to_onnx"]
