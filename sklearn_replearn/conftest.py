"""Skip the doctests of modules whose optional dependencies are not installed.

As in scikit-learn's own ``conftest.py``: the examples of the ``scale`` helpers
run as doctests when the ``scale`` extra is installed, and are reported as
skipped (with the reason) when it is not.
"""

import importlib.util

import pytest

_DOCTEST_REQUIRES = {
    "sklearn_replearn.scale.dask_transform": ("dask",),
    "sklearn_replearn._engine._accelerate.accelerator_device": (),
}


# Examples that run for seconds (the quick tour trains every estimator, the
# ONNX exports trace a model): the quick loop, ``pytest -m "not slow"``,
# leaves them out.
_SLOW_DOCTESTS = {
    "sklearn_replearn._tour.run_tour",
    "sklearn_replearn.onnx._neural.decoder_to_onnx",
    "sklearn_replearn.onnx._register.to_onnx",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not isinstance(item, pytest.DoctestItem):
            continue
        if item.name in _SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)
        missing = [
            name for name in _DOCTEST_REQUIRES.get(item.name, ())
            if importlib.util.find_spec(name) is None
        ]
        if missing:
            item.add_marker(pytest.mark.skip(
                reason=f"needs {', '.join(missing)} (pip install "
                "sklearn-replearn[scale])"))


# The ONNX export modules import onnx and skl2onnx at the top: without the
# ``onnx`` extra they are not collected (their tests skip in tests/onnx/test_onnx.py).
collect_ignore = [] if all(
    importlib.util.find_spec(name) is not None
    for name in ("onnx", "skl2onnx", "onnxruntime", "onnxscript")) else ["onnx"]
