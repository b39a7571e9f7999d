"""Named torchvision weights downloaded on first use, against a local HTTP
server started here (no internet): hash checked, unsafe pickles refused, a
missing network fails fast."""

import hashlib
import http.server
import os
import threading
import time

import numpy as np
import pytest
import torch
import torchvision

from sklearn_replearn import PretrainedCNNFeatures
from tests.vision.test_estimator import _Exploit, _seeded_resnet18_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGES = np.random.RandomState(0).randint(0, 256, (2, 32, 32, 3), np.uint8)


@pytest.fixture
def server(tmp_path):
    """Serves the files of tmp_path/served on 127.0.0.1; yields (folder, url)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _serve(folder, payload, sha_of=None):
    """Write ``payload`` under torchvision's name pattern; returns the name."""
    digest = hashlib.sha256(sha_of if sha_of is not None else payload).hexdigest()
    name = f"resnet18-{digest[:8]}.pth"
    (folder / name).write_bytes(payload)
    return name


def _point_weights_at(monkeypatch, url):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    monkeypatch.setattr(weights.value, "url", url)


def _state_bytes(tmp_path, state):
    path = tmp_path / "state.pth"
    torch.save(state, path)
    return path.read_bytes()


@pytest.mark.slow
def test_named_weights_are_downloaded_on_first_use(server, tmp_path, monkeypatch,
                                                   capsys):
    folder, url = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = _seeded_resnet18_state()
    name = _serve(folder, _state_bytes(tmp_path, state))
    _point_weights_at(monkeypatch, f"{url}/{name}")
    features = PretrainedCNNFeatures("resnet18", image_size=32, verbose=1,
                                     autocast=False, device="cpu").fit(IMAGES)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert cached.is_file()
    assert "%" in capsys.readouterr().err  # the download's progress bar
    by_state = PretrainedCNNFeatures("resnet18", weights=state, image_size=32,
                                     autocast=False, device="cpu").fit(IMAGES)
    np.testing.assert_array_equal(features.transform(IMAGES),
                                  by_state.transform(IMAGES))
    # Second use: from the cache, even with downloads off and the server gone.
    os.remove(folder / name)
    PretrainedCNNFeatures("resnet18", image_size=32, download=False,
                          device="cpu").fit(IMAGES)


@pytest.mark.slow
def test_a_file_whose_hash_does_not_match_is_refused_and_not_kept(
        server, tmp_path, monkeypatch):
    folder, url = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    good = _state_bytes(tmp_path, _seeded_resnet18_state())
    name = _serve(folder, good + b"tampered", sha_of=good)
    _point_weights_at(monkeypatch, f"{url}/{name}")
    with pytest.raises(ValueError, match="was refused.*hash.*Nothing was written"):
        PretrainedCNNFeatures("resnet18", device="cpu").fit(IMAGES)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert not checkpoints.exists() or not os.listdir(checkpoints)


def test_an_unsafe_pickle_with_a_valid_name_is_refused(server, tmp_path,
                                                       monkeypatch):
    folder, url = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    marker = tmp_path / "code_ran"
    state = _seeded_resnet18_state()
    state["fc.extra"] = _Exploit(str(marker))
    name = _serve(folder, _state_bytes(tmp_path, state))  # its own, valid hash
    _point_weights_at(monkeypatch, f"{url}/{name}")
    with pytest.raises(ValueError, match="refused and removed.*Will not load"
                                         ".*arbitrary code"):
        PretrainedCNNFeatures("resnet18", device="cpu").fit(IMAGES)
    assert not marker.exists()
    assert not (tmp_path / "torch" / "hub" / "checkpoints" / name).exists()


def _timed_urlopen(monkeypatch):
    """Wrap the download's ``urlopen``; returns the list of
    (timeout passed, seconds spent, exception raised) of each call.

    Only the connection is timed: building the backbone before it takes
    seconds on a loaded machine and says nothing about the network."""
    import sklearn_replearn.vision.backbones._download as download

    calls = []
    real_urlopen = download.urlopen

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            response = real_urlopen(*args, **kwargs)
        except Exception as exc:
            calls.append((kwargs.get("timeout"), time.perf_counter() - start, exc))
            raise
        calls.append((kwargs.get("timeout"), time.perf_counter() - start, None))
        return response

    monkeypatch.setattr(download, "urlopen", timed)
    return calls


def test_no_network_fails_fast_with_the_clear_message(tmp_path, monkeypatch):
    import sklearn_replearn.vision.backbones._download as download

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # A port nobody listens on: the connection is refused at once. (A
    # black-holed address would wait for DOWNLOAD_TIMEOUT_S instead.) The
    # timeout is raised to 120 s so that waiting for it, or retrying, would
    # show; one refused connection takes milliseconds, so 60 s is a bound
    # that no load on the machine reaches.
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 120.0)
    calls = _timed_urlopen(monkeypatch)
    with socket_port() as port:
        pass
    _point_weights_at(monkeypatch,
                      f"http://127.0.0.1:{port}/resnet18-f37072fd.pth")
    with pytest.raises(ValueError, match=r"resnet18-f37072fd\.pth.*checkpoints.*"
                                         r"download failed.*127\.0\.0\.1"):
        PretrainedCNNFeatures("resnet18", device="cpu").fit(IMAGES)
    # One attempt, refused (no retry loop, no wait for the timeout).
    assert len(calls) == 1, calls
    _, seconds, error = calls[0]
    assert isinstance(getattr(error, "reason", error), ConnectionRefusedError), error
    assert seconds < 60


def test_the_socket_timeout_bounds_a_silent_server(tmp_path, monkeypatch):
    import socket

    import sklearn_replearn.vision.backbones._download as download

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 0.5)
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    # Should the timeout not apply, closing the silent socket after 60 s ends
    # the wait with a reset connection (not "timed out"): the test then fails
    # instead of hanging.
    watchdog = threading.Timer(60, silent.close)
    watchdog.start()
    seen_defaults = []
    calls = _timed_urlopen(monkeypatch)
    timed_urlopen = download.urlopen

    def watching_urlopen(*args, **kwargs):
        # The timeout is the connection's own: the process-wide default, which
        # other threads use, is never changed.
        seen_defaults.append(socket.getdefaulttimeout())
        return timed_urlopen(*args, **kwargs)

    monkeypatch.setattr(download, "urlopen", watching_urlopen)
    try:
        _point_weights_at(monkeypatch, "http://127.0.0.1:"
                          f"{silent.getsockname()[1]}/resnet18-f37072fd.pth")
        with pytest.raises(ValueError, match="download failed.*timed out"):
            PretrainedCNNFeatures("resnet18", device="cpu").fit(IMAGES)
    finally:
        watchdog.cancel()
        silent.close()
    # One attempt, given the connection's own 0.5 s timeout, which ended it:
    # a sleeping wait, so load on the machine does not stretch it much; the
    # bound only says it did not run into the watchdog.
    assert [(timeout, error is not None) for timeout, _, error in calls] == [
        (0.5, True)]
    assert 0.4 <= calls[0][1] < 30
    assert seen_defaults == [None]
    assert socket.getdefaulttimeout() is None
    assert not os.listdir(tmp_path / "torch" / "hub" / "checkpoints")


class socket_port:
    """A free local port (bound, then released on exit)."""

    def __enter__(self):
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        return self.socket.getsockname()[1]

    def __exit__(self, *exc):
        self.socket.close()
