"""Named torchvision weights on first use: the hub cache, else a checked download.

torchvision's own mechanism (``torch.hub.download_url_to_file`` with the
SHA-256 prefix in the file name, as ``load_state_dict_from_url(check_hash=
True)``): the file is written to a temporary name and moved into the cache
only when its hash matches, so a bad download leaves nothing behind. A short
socket timeout makes a machine without a network fail within seconds rather
than hang; ``download=False`` forbids the attempt.
"""

import os
import socket
from contextlib import contextmanager
from urllib.parse import urlparse

import torch

__all__ = ["DOWNLOAD_TIMEOUT_S", "cached_weights_file"]

# Seconds a connection (or a stalled read) may take before the download is
# given up: long enough for a slow link, short enough never to look hung.
DOWNLOAD_TIMEOUT_S = 10.0


@contextmanager
def _socket_timeout(seconds):
    # urllib's urlopen, as torch.hub calls it, takes no timeout: the default
    # one applies (None: wait forever), so it is set for this attempt only.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def cached_weights_file(resolved, backbone, weights, *, download=True, verbose=0):
    """Path of the weights file of ``resolved`` in torch's hub cache.

    Downloads it first (hash checked, progress bar with ``verbose``) when it
    is missing and ``download``; raises a ValueError naming the file, the
    folder and the URL when it cannot be had.

    Parameters
    ----------
    resolved : torchvision.models.WeightsEnum
        The named weights.
    backbone, weights : str
        As the user gave them (for messages).
    download : bool, default=True
    verbose : int, default=0

    Returns
    -------
    path : str
    downloaded : bool
        Whether the file was downloaded by this call.
    """
    file_name = os.path.basename(urlparse(resolved.url).path)
    directory = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(directory, file_name)
    if os.path.isfile(path):
        return path, False
    reason = "downloading is off (download=False)"
    if download:
        try:
            os.makedirs(directory, exist_ok=True)
            match = torch.hub.HASH_REGEX.search(file_name)
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                torch.hub.download_url_to_file(
                    resolved.url, path, hash_prefix=match.group(1) if match else None,
                    progress=bool(verbose))
            return path, True
        except RuntimeError as exc:  # torch.hub's "invalid hash value"
            raise ValueError(
                f"The download of {resolved.url} for backbone={backbone!r} was "
                f"refused: {exc}. Nothing was written to {directory}; retry, or "
                f"copy a good {file_name!r} into that folder."
            ) from exc
        except (OSError, ValueError) as exc:  # no network, timeout, HTTP error
            reason = f"the download failed ({type(exc).__name__}: {exc})"
    raise ValueError(
        f"backbone={backbone!r} with weights={weights!r} ({resolved}) needs the "
        f"file {file_name!r} in {directory} (torch's hub cache; set TORCH_HOME to "
        f"move it), and it is not there; {reason}. Fetch {resolved.url} on a "
        "machine with network access and copy it into that folder (or run "
        f"torchvision.models.get_model({backbone!r}, weights={weights!r}) once "
        f"there), or pass weights='/path/to/{file_name}'."
    )
