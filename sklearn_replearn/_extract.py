"""``python -m sklearn_replearn extract``: CNN features of image files.

A drop-in feature extractor for a folder of images::

    python -m sklearn_replearn extract photos/ --backbone resnet50 \\
        --weights resnet50-11ad3fa6.pth --out features.npy

writes one row of features per image (``.npy``, with the image paths in
``features.paths.jsonl`` beside it: one JSON string per line, so any file name
fits; or ``.csv`` with a ``path`` column). Every output is written under a
temporary name and renamed at the end, all or nothing; the output folder is
checked before any feature is computed.
"""

import argparse
import csv
import os
import sys
import tempfile

import numpy as np

# Torch-free imports only: the arguments and the output folder are checked
# before torch and torchvision load (seconds), with the estimator in main.
from ._image_files import IMAGE_EXTENSIONS
from ._path_lists import read_path_list, write_json_lines, write_path_list

__all__ = ["main", "read_path_list"]


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_replearn extract",
        description="Extract pretrained CNN features (PretrainedCNNFeatures) from "
        "image files; folders are searched recursively for "
        f"{', '.join(IMAGE_EXTENSIONS)} files, in sorted order.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATHS",
                        help="image files and/or folders of images")
    parser.add_argument("--backbone", default="resnet18",
                        help="torchvision classification model, timm:<name> or "
                        "hf:<repo or folder> (default: resnet18)")
    parser.add_argument(
        "--weights", default="DEFAULT",
        help="'DEFAULT', a torchvision weights name (from the torch hub cache, "
        "downloaded with a checked hash when missing unless --no-download), a "
        ".pth/.pt/.safetensors state dict file, or 'none' for random weights "
        "(default: DEFAULT)")
    parser.add_argument(
        "--no-download", action="store_true",
        help="never download weights: fail at once, naming the file to put in "
        "the cache (for air-gapped or reproducible setups)")
    parser.add_argument("--layer", default=None,
                        help="graph node giving the features (default: the input "
                        "of the classifier)")
    parser.add_argument("--pooling", default="avg", choices=["avg", "max", "none"],
                        help="pooling of the --layer's feature maps (default: "
                        "avg; without --layer the features are the backbone's "
                        "own vectors, and only avg applies)")
    parser.add_argument("--image-size", type=_image_size, default=None,
                        help="resize the shorter side to this and crop a square "
                        "(default: the weights' preprocessing)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0,
                        help="processes loading images (default: 0)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--random-state", type=int, default=None,
                        help="seed of the random weights of --weights none "
                        "(default: none, a different network each run)")
    parser.add_argument(
        "--skip-unreadable", action="store_true",
        help="skip image files that cannot be read (listed on stderr and in "
        "OUT_STEM.skipped.jsonl) instead of failing the run")
    parser.add_argument("--out", default="features.npy",
                        help="output file, .npy or .csv (default: features.npy)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _image_size(text):
    """``--image-size``: an int of at least 2 (argparse reports the error)."""
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if size < 2:
        # 1 x 1 crops fail inside torchvision's resize of colour images.
        raise argparse.ArgumentTypeError(
            f"must be at least 2 (pixels per side of the square crop); got {size}")
    return size


def _collect(paths, parser):
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, _, names in os.walk(path):
                found.extend(os.path.join(root, name) for name in names
                             if name.lower().endswith(IMAGE_EXTENSIONS))
            files.extend(sorted(found))
        elif os.path.isfile(path):
            files.append(path)
        else:
            parser.error(f"{path!r} is neither an image file nor a folder")
    if not files:
        parser.error(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in "
                     f"{', '.join(paths)}")
    return files


def _outputs(out, extension, skip_unreadable, parser):
    """The files ``extract`` writes; exits with a clear error if it cannot.

    Checked before any feature is computed, so that a wrong --out does not
    cost the whole run.
    """
    stem = os.path.splitext(out)[0]
    targets = {"features": out}
    if extension == ".npy":
        targets["paths"] = stem + ".paths.jsonl"
    if skip_unreadable:
        targets["skipped"] = stem + ".skipped.jsonl"
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        parser.error(f"--out {out!r}: the folder {folder!r} does not exist; "
                     "create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        parser.error(f"--out {out!r}: the folder {folder!r} is not writable")
    for target in targets.values():
        if os.path.isdir(target):
            parser.error(f"--out {out!r}: {target!r} is a directory; remove it or "
                         "choose another --out")
    return targets


def _readable(files):
    """Split ``files`` into readable images and ``(path, reason)`` of the others."""
    from .vision._inputs import _open_image, _pil_to_array

    good, bad = [], []
    for path in files:
        try:
            # Decoded too: a file PIL opens may still be a kind of image the
            # models cannot take (16-bit PNGs, float TIFFs).
            _pil_to_array(_open_image(path, path), path)
        except ValueError as exc:
            bad.append((path, str(exc.__cause__ or exc)))
        else:
            good.append(path)
    return good, bad


def _write_features(handle, X_new, files, extension):
    if extension == ".npy":
        np.save(handle, X_new)  # to the handle: np.save(name) would add ".npy"
        return
    writer = csv.writer(handle)
    writer.writerow(["path", *(f"feature{i}" for i in range(X_new.shape[1]))])
    for path, row in zip(files, X_new):
        # 9 significant digits give every float32 back exactly.
        writer.writerow([path, *(format(value, ".9g") for value in row)])


def _umask():
    """The process's umask (reading it means setting it: set it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _commit(targets, writers):
    """Write each target under a temporary name, then rename all, or none."""
    temporary, done = {}, []
    try:
        for key, target in targets.items():
            binary = key == "features" and target.lower().endswith(".npy")
            fd, temporary[key] = tempfile.mkstemp(
                dir=os.path.dirname(os.path.abspath(target)),
                prefix=f".{os.path.basename(target)}.", suffix=".tmp")
            mode = "wb" if binary else "w"
            options = {} if binary else {"newline": "", "encoding": "utf-8",
                                         "errors": "surrogateescape"}
            with open(fd, mode, **options) as handle:
                writers[key](handle)
            # mkstemp creates 0600 files; the output gets the mode a plain
            # open() would give (0644 under the usual umask 022).
            os.chmod(temporary[key], 0o666 & ~_umask())
        for key, target in targets.items():
            backup = None
            if os.path.lexists(target):
                backup = f"{temporary[key]}.old"
                os.replace(target, backup)
            done.append((target, backup))
            os.replace(temporary[key], target)
            del temporary[key]
    except BaseException:
        for target, backup in reversed(done):  # put back what was there
            if os.path.lexists(target) and not os.path.isdir(target):
                os.remove(target)
            if backup is not None:
                os.replace(backup, target)
        for path in temporary.values():
            if os.path.exists(path):
                os.remove(path)
        raise
    for _, backup in done:
        if backup is not None:
            os.remove(backup)


def main(argv=None):
    """Run the ``extract`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    extension = os.path.splitext(args.out)[1].lower()
    if extension not in (".npy", ".csv"):
        parser.error(f"--out {args.out!r} must end in .npy or .csv")
    targets = _outputs(args.out, extension, args.skip_unreadable, parser)
    files = _collect(args.paths, parser)
    skipped = []
    if args.skip_unreadable:
        files, skipped = _readable(files)
        for path, reason in skipped:
            print(f"skipped unreadable image {path!r}: {reason}", file=sys.stderr)
        if not files:
            parser.exit(1, f"error: none of the {len(skipped)} image files could "
                        "be read\n")
    from .vision import PretrainedCNNFeatures

    weights = None if args.weights.lower() == "none" else args.weights
    features = PretrainedCNNFeatures(
        args.backbone, weights=weights, layer=args.layer,
        pooling=None if args.pooling == "none" else args.pooling,
        image_size=args.image_size, batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device,
        random_state=args.random_state, verbose=0 if args.quiet else 1,
        download=not args.no_download,
    )
    try:
        X_new = features.fit(files).transform(files)
    except (ValueError, TypeError) as exc:
        hint = (" (--skip-unreadable skips unreadable images)"
                if "cannot read" in str(exc) and not args.skip_unreadable else "")
        parser.exit(1, f"error: {exc}{hint}\n")
    writers = {
        "features": lambda handle: _write_features(handle, X_new, files, extension),
        "paths": lambda handle: write_path_list(handle, files),
        "skipped": lambda handle: write_json_lines(
            handle, [{"path": path, "error": reason} for path, reason in skipped]),
    }
    try:
        _commit(targets, writers)
    except OSError as exc:
        parser.exit(1, f"error: cannot write {args.out!r} ({exc}); nothing was "
                    "written\n")
    where = ", ".join(targets.values())
    note = f"; skipped {len(skipped)} unreadable" if skipped else ""
    print(f"wrote features of {len(files)} images x {X_new.shape[1]} to {where}"
          f"{note}", file=sys.stderr)
    return 0
