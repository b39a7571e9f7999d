"""The engine and the training policy shared by every training loop."""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import skorch
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback

from sklearn_replearn import AutoencoderTransformer, VAETransformer
from sklearn_replearn._engine import check_optimizer
from sklearn_replearn._engine._net import ReconstructionNet
from sklearn_replearn._utils import TrainingPolicy
from sklearn_replearn.exceptions import TrainingDivergedError

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def X():
    from sklearn.datasets import load_digits

    return (load_digits().data / 16.0)[:400]


# --------------------------------------------------------------- the policy
def _run(policy, losses):
    with policy.session() as session:
        for loss in losses:
            session.check_batch_loss(loss)
            if session.end_epoch(loss):
                break
    return policy


def test_policy_stops_on_a_plateau_relative_to_the_best_loss():
    policy = _run(TrainingPolicy(owner="t", max_iter=50, tol=0.01,
                                 n_iter_no_change=2), [1.0, 0.5, 0.499, 0.498, 0.1])
    assert policy.loss_curve == [1.0, 0.5, 0.499, 0.498] and policy.converged
    # tol=None: never stops before max_iter.
    policy = _run(TrainingPolicy(owner="t", max_iter=4, tol=None), [1.0] * 10)
    assert policy.n_epochs == 4 and not policy.converged
    # Negative losses (a Gaussian VAE's): the threshold uses the magnitude.
    policy = _run(TrainingPolicy(owner="t", max_iter=50, tol=0.01,
                                 n_iter_no_change=1), [-10.0, -10.05, -12.0])
    assert policy.loss_curve == [-10.0, -10.05]


def test_policy_warmup_epochs_neither_count_nor_provide_the_best():
    policy = _run(TrainingPolicy(owner="t", max_iter=50, tol=0.01,
                                 n_iter_no_change=1, warmup_epochs=2),
                  [0.1, 0.2, 5.0, 4.0, 4.0, 4.0])
    assert policy.loss_curve == [0.1, 0.2, 5.0, 4.0, 4.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e5])
def test_policy_detects_divergence(bad):
    policy = TrainingPolicy(owner="Demo", max_iter=5,
                            divergence_hint="Lower learning_rate (it is 3)")
    message = r"Demo: the training loss .* Lower learning_rate \(it is 3\)"
    with pytest.raises(TrainingDivergedError, match=message):
        with policy.session() as session:
            session.check_batch_loss(2.0)
            session.check_batch_loss(1.0)
            session.check_batch_loss(bad)
    # A loss that grows a few-fold on a noisy batch is not divergence.
    with policy.session() as session:
        for loss in [2.0, 9.0, 40.0, 1.0]:
            session.check_batch_loss(loss)


def test_policy_turns_ctrl_c_into_an_interruption():
    policy = TrainingPolicy(owner="t", max_iter=10)
    with pytest.warns(UserWarning, match="interrupted after 2 completed"):
        with policy.session() as session:
            for epoch in range(10):
                if epoch == 2:
                    raise KeyboardInterrupt
                session.end_epoch(1.0 / (epoch + 1))
    assert policy.interrupted and policy.n_epochs == 2


# ------------------------------------------------------- through the estimators
@pytest.mark.parametrize("make", [
    lambda: AutoencoderTransformer(learning_rate=1e3, max_iter=20),
    lambda: AutoencoderTransformer(learning_rate=1e3, optimizer="rmsprop",
                                   max_iter=20),
    lambda: VAETransformer(learning_rate=1e2, max_iter=20),
])
def test_finite_but_exploding_loss_stops_training(X, make):
    """Issue 14.2: a loss of ~1e33 is divergence, not a result."""
    estimator = make().set_params(random_state=0)
    with pytest.raises(TrainingDivergedError, match="exploded|became"):
        estimator.fit(X)
    assert not hasattr(estimator, "net_")


class _InterruptInFirstEpoch(Callback):
    def on_batch_end(self, net, **kwargs):
        if len(net.history) == 1 and len(net.history[-1]["batches"]) == 2:
            raise KeyboardInterrupt


@pytest.mark.parametrize("cls", [AutoencoderTransformer, VAETransformer])
def test_ctrl_c_in_the_first_epoch_leaves_a_usable_model(X, cls):
    """Issue 14.5: no KeyError; the weights trained so far are kept."""
    with pytest.warns(UserWarning, match="interrupted after 0 completed"):
        est = cls(n_components=3, max_iter=5, batch_size=64, random_state=0,
                  callbacks=[_InterruptInFirstEpoch()]).fit(X)
    assert est.n_iter_ == 0 == len(est.loss_curve_)
    assert np.isfinite(est.transform(X)).all()


def test_bad_optimizers_and_callbacks_are_refused_with_a_message(X):
    """Issue 14.6: not deep inside skorch."""
    with pytest.raises(TypeError, match="torch.optim.Optimizer subclass"):
        AutoencoderTransformer(optimizer=dict, max_iter=1).fit(X)
    with pytest.raises(TypeError, match="needs a closure"):
        AutoencoderTransformer(optimizer=torch.optim.LBFGS, max_iter=1).fit(X)
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be a skorch callback"):
        AutoencoderTransformer(callbacks=["x"], max_iter=1).fit(X)
    assert check_optimizer(torch.optim.NAdam) is torch.optim.NAdam
    est = AutoencoderTransformer(optimizer=torch.optim.NAdam, max_iter=2,
                                 tol=None).fit(X)
    assert type(est.net_.optimizer_) is torch.optim.NAdam


def test_verbose_2_prints_one_row_per_epoch(X, capsys):
    AutoencoderTransformer(max_iter=3, tol=None, verbose=2).fit(X)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "train_loss" in lines[0] and len(lines) == 2 + 3


def test_partial_fit_shows_its_own_epochs_from_the_first_call(X, capsys):
    est = AutoencoderTransformer(max_iter=50, verbose=2, random_state=0)
    est.partial_fit(X).partial_fit(X)
    lines = capsys.readouterr().out.strip().splitlines()
    # A header and one row for each call (the first call included).
    assert sum("train_loss" in line for line in lines) == 2
    assert len(lines) == 2 * 3  # header, rule and one row per call
    # The progress bar counts the epochs of the call, not max_iter.
    est.set_params(verbose=1).partial_fit(X)
    err = capsys.readouterr().err
    assert re.search(r"\b[01]/1\b", err) and "/50" not in err


# ----------------------------------------------------------- skorch pinning
def test_skorch_internals_are_as_overridden():
    """ReconstructionNet overrides skorch internals written for skorch 1.4.

    If this fails after a skorch upgrade, re-read each override in
    ``sklearn_replearn/_engine/_net.py`` against the new skorch, then update
    the pin in pyproject.toml and the signatures here.
    """
    major, minor = (int(part) for part in skorch.__version__.split(".")[:2])
    assert (major, minor) == (1, 4), (
        f"skorch {skorch.__version__} is outside the tested range (1.4.x)")
    expected = {
        "_set_training": "(self, training=True)",
        "notify": "(self, method_name, **cb_kwargs)",
        "on_batch_begin": "(self, net, batch=None, training=False, **kwargs)",
        "run_single_epoch":
            "(self, iterator, training, prefix, step_fn, **fit_params)",
        "train_step": "(self, batch, **fit_params)",
        "train_step_single": "(self, batch, **fit_params)",
        "infer": "(self, x, **fit_params)",
        "_step_optimizer": "(self, step_fn)",
        "_zero_grad_optimizer": "(self, set_to_none=None)",
        "validation_step": "(self, batch, **fit_params)",
    }
    for name, signature in expected.items():
        assert str(inspect.signature(getattr(NeuralNet, name))) == signature, name
    source = inspect.getsource(NeuralNet.run_single_epoch)
    assert 'self.history.record_batch(prefix + "_loss"' in source
    assert 'self.history.record(prefix + "_batch_count"' in source
    assert issubclass(ReconstructionNet, NeuralNet)
    # EpochMeanLoss replaces PassthroughScoring's averaging and recording.
    from skorch.callbacks import PassthroughScoring

    source = inspect.getsource(PassthroughScoring)
    assert "np.average(scores, weights=weights)" in source
    assert "history.record(self.name + '_best', bool(is_best))" in source


class _BatchWatcher(Callback):
    """Listens to on_batch_end, so the net takes skorch's per-batch path."""

    calls = 0  # counted on the class: the estimator trains with a copy

    def on_batch_end(self, net, **kwargs):
        type(self).calls += 1


@pytest.mark.parametrize("make", [
    lambda: AutoencoderTransformer(n_components=3, max_iter=4, batch_size=64),
    lambda: AutoencoderTransformer(n_components=3, max_iter=4, batch_size=64,
                                   early_stopping=True, optimizer="sgd"),
    lambda: VAETransformer(n_components=3, max_iter=4, batch_size=64,
                           likelihood="bernoulli", kl_warmup=2),
])
def test_the_plain_step_trains_exactly_as_skorchs_path(X, make, monkeypatch):
    """The engine's plain per-batch step is skorch's step, bit for bit."""
    monkeypatch.setattr(_BatchWatcher, "calls", 0)
    through_skorch = make().set_params(random_state=0,
                                       callbacks=[_BatchWatcher()]).fit(X)
    assert _BatchWatcher.calls > 0
    # Without a listener the plain step runs, and skorch's step never does.
    monkeypatch.setattr(ReconstructionNet, "train_step", None)
    plain = make().set_params(random_state=0).fit(X)
    assert plain.loss_curve_ == through_skorch.loss_curve_
    assert plain.n_iter_ == through_skorch.n_iter_
    np.testing.assert_array_equal(plain.transform(X), through_skorch.transform(X))
    history, skorch_history = plain.net_.history, through_skorch.net_.history
    for key in ("train_loss", "valid_loss", "train_loss_best", "train_nll"):
        if key in skorch_history[-1]:
            assert history[:, key] == skorch_history[:, key], key


# ------------------------------------------- tests that catch planted bugs
def test_vae_training_loss_weighs_the_kl_term_by_beta(X):
    """Issue 14.11: the loss itself must use beta (not just the attribute)."""
    for beta in (0.0, 4.0):
        vae = VAETransformer(n_components=2, likelihood="bernoulli", beta=beta,
                             max_iter=2, tol=None, random_state=0).fit(X)
        expected = [-reconstruction + beta * kl for reconstruction, kl in
                    zip(vae.reconstruction_curve_, vae.kl_curve_)]
        np.testing.assert_allclose(vae.loss_curve_, expected, rtol=1e-5)
        assert vae.module_.kl_weight == beta


@pytest.mark.parametrize("cls", [AutoencoderTransformer, VAETransformer])
def test_every_row_is_trained_on_each_epoch(X, cls):
    """Issue 14.11: the last, partial batch is not dropped (401 = 4 x 100 + 1).

    A last batch of one row joins the one before it (a user's BatchNorm
    cannot train on one row), so every row still trains each epoch."""
    rows = []

    class CountRows(Callback):
        def on_batch_end(self, net, batch=None, training=None, **kwargs):
            if training:
                rows.append(len(batch[0]))

    X_odd = np.vstack([X, X[:1]])
    # All rows train without early stopping (the default holds some out).
    cls(n_components=2, batch_size=100, max_iter=2, tol=None, random_state=0,
        early_stopping=False, callbacks=[CountRows()]).fit(X_odd)
    assert rows == [100, 100, 100, 101] * 2
