"""Compiled inference of PretrainedCNNFeatures: the "auto" rule, the compiled
module's agreement and batch invariance, persistence without compiled
objects, and the eager fallback when compilation fails."""

import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_images
from torch import nn

from sklearn_replearn import PretrainedCNNFeatures
from sklearn_replearn.vision import _compile
from sklearn_replearn.vision._compile import (
    CompiledOrEager,
    break_even_images,
    should_compile,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_compile_state(monkeypatch):
    """Each test starts with no failure or slower compilation recorded and no
    warning given."""
    monkeypatch.setattr(_compile, "_FAILED_DEVICE_TYPES", set())
    monkeypatch.setattr(_compile, "_NO_GAIN", set())
    monkeypatch.setattr(_compile, "_WARNED", [])


@pytest.fixture(scope="module")
def crops():
    """24 random 48 x 48 crops of sklearn's two sample photos (uint8)."""
    photos = load_sample_images().images
    rng = np.random.RandomState(0)
    out = np.empty((24, 48, 48, 3), np.uint8)
    for index in range(len(out)):
        photo = photos[index % 2]
        top, left = rng.randint(photo.shape[0] - 48), rng.randint(photo.shape[1] - 48)
        out[index] = photo[top:top + 48, left:left + 48]
    return out


def small_cnn():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))


def features(**params):
    params = {"weights": None, "image_size": 32, "batch_size": 4, "device": "cpu",
              "autocast": False, **params}
    return PretrainedCNNFeatures(small_cnn(), **params)


def compiled_modules(estimator):
    return [module for module in estimator.__dict__.get("_runtime", {}).values()
            if isinstance(module, CompiledOrEager)]


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ------------------------------------------------------------ the "auto" rule
def test_auto_rule_is_eager_for_small_work_and_compiles_for_large_work():
    size = (224, 224)
    at = break_even_images(CPU, size)
    assert 10 < at < float("inf")
    assert not should_compile("auto", CPU, size, n_images=10)
    assert should_compile("auto", CPU, size, n_images=int(np.ceil(at)))
    # Work done eagerly before counts (compiling then costs at most that).
    assert not should_compile("auto", CPU, size, n_images=int(at) // 2)
    assert should_compile("auto", CPU, size, n_images=int(at) // 2 + 1,
                          n_done=int(at) // 2 + 1)
    # Once compiled, every call reuses it, even a single image.
    assert should_compile("auto", CPU, size, n_images=1, compiled=True)
    # Larger images repay sooner; smaller ones later.
    assert break_even_images(CPU, (448, 448)) == pytest.approx(at / 4)
    assert break_even_images(CPU, (32, 32)) > at
    # Compiled bfloat16 gains more over eager than float32: it pays sooner.
    assert break_even_images(CPU, size, torch.bfloat16) < at
    assert should_compile("auto", CPU, size, n_images=int(at) - 1,
                          dtype=torch.bfloat16)
    # True and False decide alone.
    assert should_compile(True, CPU, size, n_images=1)
    assert not should_compile(False, CPU, size, n_images=10**9)


def test_auto_rule_stays_eager_without_a_measured_break_even_or_after_a_failure():
    assert break_even_images(torch.device("mps"), (224, 224)) == float("inf")
    assert not should_compile("auto", torch.device("mps"), (224, 224),
                              n_images=10**9)
    _compile._FAILED_DEVICE_TYPES.add("cpu")
    assert not should_compile("auto", CPU, (224, 224), n_images=10**9)
    assert should_compile(True, CPU, (224, 224), n_images=1)


def test_compile_parameter_is_validated():
    with pytest.raises(ValueError, match="compile"):
        features(compile="always").fit(np.zeros((1, 32, 32, 3), np.uint8))


# ----------------------------------------------- wiring, with a fake compiler
class RecordingCompile:
    """Stands for torch.compile: records each call, returns the module."""

    def __init__(self):
        self.calls = []

    def __call__(self, module, **options):
        self.calls.append(options)
        return module


def fake_clock(compiled_seconds):
    """Stands for ``_compile._seconds``: the eager module takes 1 s a batch,
    the compiled one ``compiled_seconds``; records the batch shapes timed."""
    shapes = []

    def seconds(module, batch, device):
        shapes.append(tuple(batch.shape))
        return compiled_seconds if isinstance(module, CompiledModule) else 1.0

    seconds.shapes = shapes
    return seconds


class CompiledModule(nn.Module):
    """What the fake compiler returns: the module, recognisably wrapped."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, batch):
        return self.module(batch)


class WrappingCompile(RecordingCompile):
    def __call__(self, module, **options):
        self.calls.append(options)
        return CompiledModule(module)


def test_auto_compiles_once_the_work_repays_it_then_reuses_it(monkeypatch, crops):
    fake = WrappingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    clock = fake_clock(compiled_seconds=0.5)
    monkeypatch.setattr(_compile, "_seconds", clock)
    # 32 x 32 images: break-even of 16 images at 224 x 224 * 49 = 784 / 49.
    monkeypatch.setattr(_compile, "_BREAK_EVEN_IMAGES",
                        {("cpu", torch.float32): 16 / 49})
    estimator = features().fit(crops[:1])  # fit probes eagerly
    assert fake.calls == [] and compiled_modules(estimator) == []
    estimator.transform(crops[:10])  # 10 < 16: eager
    assert fake.calls == []
    estimator.transform(crops[:10])  # 20 images in all: compile
    assert fake.calls == [{"dynamic": False, "options": {"freezing": True}}]
    # Timed against the eager module on a full batch (4 images of 32 x 32),
    # twice each, before it was used.
    assert clock.shapes == [(4, 3, 32, 32)] * 4
    estimator.transform(crops[:1])  # reused, not rebuilt
    estimator.feature_maps(crops[:2], layer="2")  # another layer: still eager
    assert len(fake.calls) == 1 and len(compiled_modules(estimator)) == 1
    # compile=False never compiles; set_params drops the compiled module.
    estimator.set_params(compile=False)
    estimator.transform(crops)
    assert len(fake.calls) == 1 and compiled_modules(estimator) == []


def test_auto_stays_eager_where_the_compiled_module_is_no_faster(monkeypatch,
                                                                crops):
    fake = WrappingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    monkeypatch.setattr(_compile, "_seconds", fake_clock(compiled_seconds=1.5))
    monkeypatch.setattr(_compile, "_BREAK_EVEN_IMAGES",
                        {("cpu", torch.float32): 16 / 49})
    eager = features(compile=False).fit(crops[:1]).transform(crops)
    estimator = features().fit(crops[:1])
    # Past the break-even: compiled, timed slower, dropped; the whole call ran
    # eagerly (bit-identical to compile=False).
    np.testing.assert_array_equal(estimator.transform(crops), eager)
    assert len(fake.calls) == 1 and compiled_modules(estimator) == []
    # Neither this estimator nor another of the same backbone compiles again
    # in this process; compile=True still does (no timing).
    other = features().fit(crops[:1])
    np.testing.assert_array_equal(other.transform(crops), eager)
    estimator.transform(crops)
    assert len(fake.calls) == 1
    (verdict,) = _compile._NO_GAIN
    device_type, dtype, ((backbone, layer), size, batch_size) = verdict
    assert (device_type, backbone[0], size, batch_size) == (
        "cpu", "Sequential", (32, 32), 4)
    assert not should_compile("auto", CPU, size, n_images=10**9, dtype=dtype,
                              family=verdict[2])
    # Another backbone, layer, image size or batch size gets its own verdict.
    for other_key in [(("resnet18", layer), size, batch_size),
                      ((backbone, layer), (64, 64), batch_size),
                      ((backbone, layer), size, 8)]:
        assert should_compile("auto", CPU, size, n_images=10**9, dtype=dtype,
                              family=other_key)
    forced = features(compile=True).fit(crops[:1])
    forced.transform(crops[:4])
    assert len(fake.calls) == 2 and len(compiled_modules(forced)) == 1


def test_auto_keeps_a_compiled_module_within_timing_noise(monkeypatch, crops):
    fake = WrappingCompile()
    monkeypatch.setattr(torch, "compile", fake)
    # 0.97 times the eager speed: within two timed calls' noise.
    monkeypatch.setattr(_compile, "_seconds", fake_clock(compiled_seconds=1.03))
    monkeypatch.setattr(_compile, "_BREAK_EVEN_IMAGES",
                        {("cpu", torch.float32): 16 / 49})
    estimator = features().fit(crops[:1])
    estimator.transform(crops)
    assert len(compiled_modules(estimator)) == 1 and not _compile._NO_GAIN


@pytest.mark.slow
def test_auto_compiles_one_graph_for_its_timing_and_the_transform(monkeypatch,
                                                                  crops):
    """The timing's batch is made as the transform's are: no second graph."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(_compile, "_BREAK_EVEN_IMAGES",
                        {("cpu", torch.float32): 0})
    estimator = features().fit(crops[:1])
    before = counters["stats"]["unique_graphs"]
    out = estimator.transform(crops)
    estimator.transform(crops[:3])
    assert counters["stats"]["unique_graphs"] - before == 1
    eager = features(compile=False).fit(crops[:1]).transform(crops)
    assert cosines(out, eager).min() >= 0.999


def test_speedup_times_both_modules_on_the_batch_under_autocast(monkeypatch):
    module = nn.Linear(3, 2)
    seen = []

    def compiled(batch):
        seen.append(torch.is_autocast_enabled("cpu"))
        return module(batch)

    monkeypatch.setattr(_compile, "_seconds", lambda function, batch, device:
                        0.25 if function is compiled else 1.0)
    wrapper = CompiledOrEager(module, compiler=lambda m: compiled)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    assert wrapper.speedup(torch.randn(4, 3), autocast) == 4.0
    assert seen == [True]  # the warm-up call (the fake clock ran the others)

    def failing(batch):
        raise RuntimeError("unsupported operation")

    broken = CompiledOrEager(module, compiler=lambda m: failing)
    with pytest.warns(RuntimeWarning, match="unsupported operation"):
        assert broken.speedup(torch.randn(4, 3), torch.autocast("cpu")) == 0.0


@pytest.mark.slow
def test_pickle_and_skops_keep_no_compiled_module(monkeypatch, crops):
    monkeypatch.setattr(torch, "compile", RecordingCompile())
    estimator = PretrainedCNNFeatures("resnet18", weights=None, image_size=32,
                                      batch_size=4, device="cpu", autocast=False,
                                      compile=True, random_state=0).fit(crops[:1])
    expected = estimator.transform(crops[:6])
    assert len(compiled_modules(estimator)) == 1
    restored = pickle.loads(pickle.dumps(estimator))
    assert "_runtime" not in restored.__dict__
    np.testing.assert_array_equal(restored.transform(crops[:6]), expected)
    assert len(compiled_modules(estimator)) == 1  # the original kept its own

    sio = pytest.importorskip("skops.io")
    state = estimator.__getstate__()
    assert "_runtime" not in state
    data = sio.dumps(estimator)
    untrusted = sio.get_untrusted_types(data=data)
    assert all(name.startswith("sklearn_replearn.") for name in untrusted)
    loaded = sio.loads(data, trusted=untrusted)
    assert "_runtime" not in loaded.__dict__
    np.testing.assert_array_equal(loaded.transform(crops[:6]), expected)


# ---------------------------------------------------------- eager fallback
def test_failing_compilation_falls_back_to_eager_with_one_warning(monkeypatch,
                                                                 crops):
    def broken_compile(module, **options):
        raise RuntimeError("no C++ compiler found\nsecond line")

    monkeypatch.setattr(torch, "compile", broken_compile)
    eager = features(compile=False).fit(crops[:1]).transform(crops)
    first = features(compile=True).fit(crops[:1])
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found\\);") as w:
        np.testing.assert_array_equal(first.transform(crops), eager)
    assert len(w) == 1
    # Later calls and other estimators: no second warning; "auto" stops trying.
    second = features(compile=True).fit(crops[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(first.transform(crops), eager)
        np.testing.assert_array_equal(second.transform(crops), eager)
    assert not should_compile("auto", CPU, (224, 224), n_images=10**9)


def test_compiled_module_failing_at_its_first_call_runs_eagerly():
    """torch.compile compiles lazily: a failure shows at the first call."""
    module = nn.Linear(3, 2)

    def lazy_failure(batch):
        raise RuntimeError("unsupported operation")

    wrapper = CompiledOrEager(module, compiler=lambda m: lazy_failure)
    batch = torch.randn(4, 3)
    with pytest.warns(RuntimeWarning, match="unsupported operation") as w:
        out = wrapper(batch)
    assert len(w) == 1 and wrapper.failed and wrapper.compiled is None
    torch.testing.assert_close(out, module(batch), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapper(batch)


# ------------------------------------------- real compilation (slow to build)
@pytest.mark.slow
@pytest.mark.parametrize("bf16", [False, True])
def test_compiled_frozen_features_agree_with_float32_eager(monkeypatch, crops, bf16):
    if bf16:  # the bfloat16 path, emulated where the CPU lacks it
        monkeypatch.setenv("SKLEARN_REPLEARN_CPU_BF16", "1")
    eager = features(compile=False).fit(crops[:1]).transform(crops)
    compiled = features(compile=True, autocast=bf16).fit(crops[:1])
    out = compiled.transform(crops)
    (module,) = compiled_modules(compiled)
    assert module.compiled is not None and not module.failed
    assert cosines(out, eager).min() >= 0.999
    if not bf16:
        np.testing.assert_allclose(out, eager, rtol=1e-4, atol=1e-5)
    # Batch invariance: an image alone gets the features it gets in a batch.
    for index in (0, 5, 23):
        np.testing.assert_array_equal(
            compiled.transform(crops[index:index + 1]), out[index:index + 1])
    np.testing.assert_array_equal(
        compiled.transform(np.ascontiguousarray(crops[::-1])), out[::-1])
    # Still one compiled module: later calls reused it.
    assert compiled_modules(compiled) == [module]
    buffer = io.BytesIO()
    pickle.dump(compiled, buffer)
    assert b"OptimizedModule" not in buffer.getvalue()
    assert b"CompiledOrEager" not in buffer.getvalue()
