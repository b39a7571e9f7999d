"""Training through Hugging Face Accelerate (skorch's AccelerateMixin), on CPU.

Needs ``accelerate`` (the ``scale`` extra); skipped without it. The estimators'
``accelerator=`` parameter goes to the engine (``_engine.build_net`` and
``training_device``); these tests check it end to end.
"""

import pickle

import numpy as np
import pytest
import torch

accelerate = pytest.importorskip("accelerate")

from sklearn.base import clone  # noqa: E402

from sklearn_replearn import AutoencoderTransformer, VAETransformer  # noqa: E402
from sklearn_replearn._engine import RowDataset, build_net  # noqa: E402
from sklearn_replearn._engine._accelerate import (  # noqa: E402
    AcceleratedReconstructionNet,
    _ProcessShard,
    accelerator_device,
    check_accelerator,
)

# Short names for the estimators trained through an accelerator.
AcceleratedAutoencoder = AutoencoderTransformer
AcceleratedVAE = VAETransformer


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state (mixed precision, device, ...):
    reset it around each test, as accelerate's own test cases do."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def X():
    return np.random.RandomState(0).rand(300, 12).astype(np.float32)


@pytest.fixture
def accelerator():
    return accelerate.Accelerator(cpu=True)


def _params():
    return dict(n_components=3, hidden_layer_sizes=(16,), max_iter=4, tol=None,
                random_state=0)


@pytest.mark.parametrize("cls", [AcceleratedAutoencoder, AcceleratedVAE],
                         ids=["ae", "vae"])
def test_fit_transform_on_cpu_matches_plain_training(cls, X, accelerator, capfd):
    est = cls(accelerator=accelerator, **_params()).fit(X)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""  # verbose=0 is silent

    assert type(est.net_) is AcceleratedReconstructionNet
    assert est.net_.accelerator is accelerator
    assert str(est.net_.device) == "cpu"
    # The accelerator placed the module; it is unwrapped after training.
    assert {p.device.type for p in est.module_.parameters()} == {"cpu"}
    assert not est.net_._wrapped_with_accelerator
    assert est.n_iter_ == 4 and len(est.loss_curve_) == 4
    assert est.loss_curve_[-1] < est.loss_curve_[0]

    Z = est.transform(X)
    assert Z.shape == (300, 3) and Z.dtype == np.float32
    # Without mixed precision, one CPU process trains exactly as without it.
    plain = cls(**_params()).fit(X)
    np.testing.assert_allclose(est.loss_curve_, plain.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(Z, plain.transform(X), rtol=0, atol=1e-6)


def test_mixed_precision_bf16_on_cpu(X):
    accelerator = accelerate.Accelerator(cpu=True, mixed_precision="bf16")
    est = AcceleratedAutoencoder(accelerator=accelerator, **_params()).fit(X)
    plain = AcceleratedAutoencoder(**_params()).fit(X)
    # bf16 autocast was really used: the losses differ from float32 training,
    # by bf16's rounding (3 significant digits), not by a different model.
    assert not np.allclose(est.loss_curve_, plain.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(est.loss_curve_, plain.loss_curve_, rtol=0.05)
    # Parameters stay float32 and inference runs unwrapped in float32.
    assert {p.dtype for p in est.module_.parameters()} == {torch.float32}
    assert est.transform(X).dtype == np.float32
    assert est.score(X) == pytest.approx(plain.score(X), rel=0.05)


def test_verbose_2_prints_through_the_accelerator(X, accelerator, capfd):
    AcceleratedAutoencoder(accelerator=accelerator, verbose=2, **_params()).fit(X)
    out = capfd.readouterr().out
    assert "train_loss" in out and len(out.strip().splitlines()) >= 4 + 2


def test_pickle_and_clone(X, accelerator):
    est = AcceleratedVAE(accelerator=accelerator, **_params()).fit(X)
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.transform(X), est.transform(X))
    assert type(restored.net_) is AcceleratedReconstructionNet
    assert isinstance(restored.accelerator, accelerate.Accelerator)

    cloned = clone(est)
    assert "net_" not in vars(cloned)
    assert isinstance(cloned.get_params()["accelerator"], accelerate.Accelerator)
    np.testing.assert_array_equal(cloned.fit(X).transform(X), est.transform(X))


def test_partial_fit_rewraps_and_continues(X, accelerator):
    est = AcceleratedAutoencoder(accelerator=accelerator, **_params())
    prepared = []
    original_prepare = accelerator.prepare

    def counting_prepare(*args):
        prepared.extend(type(arg).__name__ for arg in args)
        return original_prepare(*args)

    accelerator.prepare = counting_prepare
    for start in range(0, 300, 100):
        est.partial_fit(X[start:start + 100])
    assert est.n_iter_ == 3
    # Module prepared once per call (the first call also the optimizer).
    assert prepared.count("Autoencoder") == 3
    assert prepared.count("Adam") == 1
    plain = AcceleratedAutoencoder(**_params())
    for start in range(0, 300, 100):
        plain.partial_fit(X[start:start + 100])
    np.testing.assert_allclose(est.transform(X), plain.transform(X), atol=1e-6)


def test_net_built_from_the_estimator_module(X, accelerator):
    """build_net with an accelerator, on the module an estimator builds."""
    # net.fit below gets no validation rows: the estimator's early-stopping
    # split (on by default) is not part of what this test builds.
    est = VAETransformer(**_params(), early_stopping=False)
    module = est._checked_module(X.shape[1], torch.device("cpu"))
    settings = {name: getattr(est, name) for name in (
        "max_iter", "batch_size", "learning_rate", "optimizer", "weight_decay",
        "early_stopping", "n_iter_no_change", "tol", "verbose")}
    net = build_net(module, criterion=None, device="cpu", owner="VAETransformer",
                    accelerator=accelerator, **settings)
    assert isinstance(net, AcceleratedReconstructionNet)
    net.fit(RowDataset(X, "cpu"))
    assert len(net.history) == 4
    # The VAE's own ELBO was the loss (not the placeholder criterion).
    assert "train_kl" in net.history[-1]
    assert net.history[-1, "train_loss"] < net.history[0, "train_loss"]


def test_bad_accelerator_and_device(X, accelerator):
    for bad in ["cuda", torch.device("cpu"), object()]:
        with pytest.raises(TypeError, match="accelerate.Accelerator instance"):
            check_accelerator(bad)
    with pytest.raises((TypeError, ValueError), match="accelerator"):
        AcceleratedAutoencoder(accelerator="cuda", **_params()).fit(X)
    with pytest.raises(ValueError, match="conflicts with the accelerator"):
        accelerator_device(accelerator, "cuda")
    with pytest.raises(ValueError, match="conflicts with the accelerator"):
        AcceleratedAutoencoder(accelerator=accelerator, device="cuda:1",
                               **_params()).fit(X)
    with pytest.raises(ValueError, match="not a device name"):
        accelerator_device(accelerator, "gpu-please")
    assert accelerator_device(accelerator, "cpu") == torch.device("cpu")


class _Batches:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(range(self.n))


@pytest.mark.parametrize("n_batches, n_processes", [(5, 2), (6, 3), (1, 3), (7, 4)])
def test_process_shards_are_disjoint_and_equal_length(n_batches, n_processes):
    shards = [list(_ProcessShard(_Batches(n_batches), index, n_processes))
              for index in range(n_processes)]
    steps = -(-n_batches // n_processes)
    assert all(len(shard) == steps for shard in shards)
    # Each batch belongs to exactly one process; padding (to keep the steps
    # equal) repeats batch ``index % n_batches``.
    owned = []
    for index, shard in enumerate(shards):
        own = [b for b in range(n_batches) if b % n_processes == index]
        assert shard[:len(own)] == own
        assert set(shard[len(own):]) <= {index % n_batches}
        owned.extend(own)
    assert sorted(owned) == list(range(n_batches))
