"""Named torchvision weights on first use: the hub cache, else a checked download.

The download does what torchvision's ``load_state_dict_from_url(check_hash=
True)`` does (``torch.hub.download_url_to_file``): the file is written to a
temporary name beside its destination and moved into the cache only when its
SHA-256 starts with the prefix in the file name, so a bad download leaves
nothing behind. Unlike torch.hub, the connection and every read carry a
timeout of their own (torch.hub's ``urlopen`` takes none, and changing
``socket``'s process-wide default would affect every other thread), so a
machine without a network fails within seconds rather than hanging;
``download=False`` forbids the attempt. (Name resolution is the system's and
is bounded by its own resolver timeout.)
"""

import hashlib
import os
import uuid
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import torch

__all__ = ["DOWNLOAD_TIMEOUT_S", "cached_weights_file"]

# Seconds a connection (or a stalled read) may take before the download is
# given up: long enough for a slow link, short enough never to look hung.
DOWNLOAD_TIMEOUT_S = 10.0

_CHUNK_BYTES = 1 << 20


def _download_to(url, path, hash_prefix=None, progress=False):
    """Download ``url`` to ``path`` atomically, checking the SHA-256 prefix.

    Raises ``RuntimeError("invalid hash value ...")`` as torch.hub does when
    the hash does not match, ``OSError`` (``URLError``, ``TimeoutError``) when
    the server cannot be reached or stalls for ``DOWNLOAD_TIMEOUT_S``.
    """
    from tqdm.auto import tqdm

    partial = f"{path}.{uuid.uuid4().hex}.partial"
    request = Request(url, headers={"User-Agent": "sklearn-replearn"})
    try:
        with urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                open(partial, "wb") as out:
            size = response.headers.get("Content-Length")
            sha256 = hashlib.sha256()
            with tqdm(total=int(size) if size else None, disable=not progress,
                      unit="B", unit_scale=True, unit_divisor=1024) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    sha256.update(chunk)
                    bar.update(len(chunk))
        digest = sha256.hexdigest()
        if hash_prefix is not None and not digest.startswith(hash_prefix):
            raise RuntimeError(
                f'invalid hash value (expected "{hash_prefix}", got "{digest}")')
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


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
            _download_to(resolved.url, path,
                         hash_prefix=match.group(1) if match else None,
                         progress=bool(verbose))
            return path, True
        except RuntimeError as exc:  # "invalid hash value"
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
