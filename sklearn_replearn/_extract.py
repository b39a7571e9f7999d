"""``python -m sklearn_replearn extract``: CNN features of image files.

A drop-in feature extractor for a folder of images::

    python -m sklearn_replearn extract photos/ --backbone resnet50 \\
        --weights resnet50-11ad3fa6.pth --out features.npy

writes one row of features per image (``.npy``, with the image paths in
``features.paths.txt`` beside it, or ``.csv`` with a ``path`` column).
"""

import argparse
import csv
import os
import sys

import numpy as np

from .vision._inputs import IMAGE_EXTENSIONS

__all__ = ["main"]


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
                        help="torchvision classification model (default: resnet18)")
    parser.add_argument(
        "--weights", default="DEFAULT",
        help="'DEFAULT', a torchvision weights name (from the torch hub cache, "
        "never downloaded), a .pth/.pt/.safetensors state dict file, or 'none' "
        "for random weights (default: DEFAULT)")
    parser.add_argument("--layer", default=None,
                        help="graph node giving the features (default: the input "
                        "of the classifier)")
    parser.add_argument("--pooling", default="avg", choices=["avg", "max", "none"],
                        help="pooling of feature maps (default: avg)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize the shorter side to this and crop a square "
                        "(default: the weights' preprocessing)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0,
                        help="processes loading images (default: 0)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="features.npy",
                        help="output file, .npy or .csv (default: features.npy)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


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


def main(argv=None):
    """Run the ``extract`` command; returns the exit status."""
    from .vision import PretrainedCNNFeatures

    parser = _parser()
    args = parser.parse_args(argv)
    extension = os.path.splitext(args.out)[1].lower()
    if extension not in (".npy", ".csv"):
        parser.error(f"--out {args.out!r} must end in .npy or .csv")
    files = _collect(args.paths, parser)
    weights = None if args.weights.lower() == "none" else args.weights
    features = PretrainedCNNFeatures(
        args.backbone, weights=weights, layer=args.layer,
        pooling=None if args.pooling == "none" else args.pooling,
        image_size=args.image_size, batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device,
        verbose=0 if args.quiet else 1,
    )
    try:
        X_new = features.fit(files).transform(files)
    except (ValueError, TypeError) as exc:
        parser.exit(1, f"error: {exc}\n")
    if extension == ".npy":
        np.save(args.out, X_new)
        listing = os.path.splitext(args.out)[0] + ".paths.txt"
        with open(listing, "w", encoding="utf-8") as handle:
            handle.writelines(f"{path}\n" for path in files)
        where = f"{args.out} (image paths in {listing})"
    else:
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", *(f"feature{i}" for i in range(X_new.shape[1]))])
            for path, row in zip(files, X_new):
                writer.writerow([path, *(repr(float(value)) for value in row)])
        where = args.out
    print(f"wrote features of {len(files)} images x {X_new.shape[1]} to {where}",
          file=sys.stderr)
    return 0
