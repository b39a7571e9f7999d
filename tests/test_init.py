"""The package ``__init__``: the public names, loaded on first use."""

import json
import os
import subprocess
import sys

import pytest

import sklearn_replearn

HEAVY = ["torchvision", "skorch", "timm", "transformers", "dask", "ray",
         "matplotlib", "skops", "accelerate"]


def _modules_after(*codes):
    """The HEAVY modules a fresh interpreter holds after running each of
    ``codes`` in turn (one list per code)."""
    report = ("import json, sys\n"
              f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n")
    script = "\n".join(code + "\n" + report for code in codes)
    root = os.path.dirname(os.path.dirname(sklearn_replearn.__file__))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                            text=True, env=env, check=True, timeout=300)
    lines = result.stdout.strip().splitlines()[-len(codes):]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def after_import_and_dictionary_learner():
    # One interpreter for both: ``from sklearn_replearn import
    # DictionaryLearner`` runs ``import sklearn_replearn`` first anyway, so
    # the second list is what a fresh interpreter holds after that import.
    return _modules_after("import sklearn_replearn",
                          "from sklearn_replearn import DictionaryLearner")


def test_import_loads_no_optional_or_heavy_library(
        after_import_and_dictionary_learner):
    assert after_import_and_dictionary_learner[0] == []


def test_dictionary_learner_needs_neither_skorch_nor_torchvision(
        after_import_and_dictionary_learner):
    assert after_import_and_dictionary_learner[1] == []


@pytest.mark.slow  # two fresh interpreters that import torch
def test_each_estimator_loads_only_what_it_uses():
    assert _modules_after(
        "from sklearn_replearn import AutoencoderTransformer") == [["skorch"]]
    # Fine-tuning imports skorch when it runs, not before.
    assert _modules_after(
        "from sklearn_replearn import PretrainedCNNFeatures") == [["torchvision"]]


def test_public_names_resolve_and_all_is_sorted():
    assert sklearn_replearn.__all__ == sorted(sklearn_replearn.__all__)
    for name in sklearn_replearn.__all__:
        assert getattr(sklearn_replearn, name) is not None
    assert set(sklearn_replearn.__all__) <= set(dir(sklearn_replearn))
    from sklearn_replearn.dictionary import DictionaryLearner

    assert sklearn_replearn.DictionaryLearner is DictionaryLearner
    assert sklearn_replearn.datasets.load_patches is not None


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        sklearn_replearn.Nothing  # noqa: B018
