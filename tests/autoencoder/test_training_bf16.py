"""AutoencoderTransformer and VAETransformer trained in bfloat16 (``autocast``).

``SKLEARN_REPLEARN_CPU_BF16=1`` forces bfloat16 so that these tests run on
every CPU (emulated, slower, where the CPU lacks it: the numbers are the same).
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from sklearn_replearn import AutoencoderTransformer, VAETransformer
from sklearn_replearn._utils._precision import training_autocast_dtype

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


@pytest.fixture
def bf16(monkeypatch):
    monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "1")


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data.astype(np.float32) / 16
    return train_test_split(X, test_size=0.25, random_state=0)


def _linear_output_dtypes(model):
    """Record the dtype of every Linear layer's output while ``model`` fits."""
    seen = set()

    def record(module, inputs, output):
        if module.training:
            seen.add(output.dtype)

    original = model._build_net

    def build_net(module, *args, **kwargs):
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.register_forward_hook(record)
        return original(module, *args, **kwargs)

    model._build_net = build_net
    return seen


def test_training_dtype_follows_the_flag_the_device_and_the_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "1")
    assert training_autocast_dtype(cpu, True) is torch.bfloat16
    assert training_autocast_dtype(cpu, False) is None
    assert training_autocast_dtype(torch.device("mps"), True) is None
    monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "0")
    assert training_autocast_dtype(cpu, True) is None


@pytest.mark.parametrize("Estimator", [AutoencoderTransformer, VAETransformer])
def test_forward_passes_of_training_run_in_bfloat16_weights_stay_float32(
        Estimator, digits, bf16):
    X_train, _ = digits
    model = Estimator(n_components=4, max_iter=3, tol=None, autocast=True,
                      random_state=0)
    dtypes = _linear_output_dtypes(model)
    model.fit(X_train[:300])
    assert dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.module_.parameters())
    assert model.transform(X_train[:5]).dtype == np.float32
    assert np.isfinite(model.loss_curve_).all()


@pytest.mark.parametrize("setting", ["off", "no native bfloat16"])
def test_training_stays_float32_when_off_or_not_native(setting, digits,
                                                        monkeypatch):
    X_train, _ = digits
    monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16",
                       "1" if setting == "off" else "0")
    model = AutoencoderTransformer(n_components=4, max_iter=2, tol=None,
                                   autocast=setting != "off", random_state=0)
    dtypes = _linear_output_dtypes(model)
    model.fit(X_train[:300])
    assert dtypes == {torch.float32}


@pytest.mark.slow
def test_bfloat16_training_reconstructs_as_well_as_float32(digits, monkeypatch):
    # bfloat16 forward passes change the training trajectory, not what it
    # reaches: held-out error within 5% of float32 training, both below PCA.
    X_train, X_test = digits
    errors = {}
    for autocast in (False, True):
        monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "1")
        model = AutoencoderTransformer(n_components=8, max_iter=40,
                                       autocast=autocast, random_state=0)
        errors[autocast] = -model.fit(X_train).score(X_test)
    pca = PCA(8).fit(X_train)
    pca_error = np.mean((pca.inverse_transform(pca.transform(X_test))
                         - X_test) ** 2)
    assert errors[True] == pytest.approx(errors[False], rel=0.05)
    assert errors[True] <= pca_error * 1.001


def test_autocast_is_a_parameter_that_clones_and_pickles(digits, bf16):
    X_train, X_test = digits
    model = VAETransformer(n_components=2, max_iter=2, tol=None,
                           autocast=False, random_state=0)
    assert clone(model).get_params()["autocast"] is False
    model.set_params(autocast=True).fit(X_train[:200])
    restored = pickle.loads(pickle.dumps(model))
    assert restored.autocast is True
    np.testing.assert_array_equal(restored.transform(X_test),
                                  model.transform(X_test))
    restored.partial_fit(X_train[:64])  # trains on after loading


def test_the_vae_trains_in_float32_unless_asked(digits, bf16):
    # Its default is off: bfloat16 training reached a lower held-out ELBO.
    model = VAETransformer(n_components=4, max_iter=2, tol=None, random_state=0)
    dtypes = _linear_output_dtypes(model)
    model.fit(digits[0][:200])
    assert model.autocast is False
    assert dtypes == {torch.float32}


def test_autocast_must_be_a_boolean(digits):
    with pytest.raises(ValueError, match="autocast"):
        AutoencoderTransformer(autocast="bf16").fit(digits[0][:50])
