"""Command line of the tour: ``python -m sklearn_replearn [options]``.

The arguments are parsed and checked before the tour (and torch, skorch and
torchvision with it) is imported, so a wrong argument is answered at once.
The tour itself is in ``_tour``.
"""

import argparse
import sys

__all__ = ["main"]


def main(argv=None):
    """Run the tour with command-line arguments ``argv``; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_replearn",
        description="Tour of representation learners on data that ships offline. "
        "--data digits (default): each representation on sklearn's 8x8 digits, "
        "then StandardScaler + LogisticRegression; prints held-out "
        "reconstruction error, accuracy and fit time. --data patches: "
        "dictionary and (sparse) autoencoder filters learned on natural-image "
        "patches, with their held-out reconstruction error and how localised "
        "they are. Subcommand: 'extract' (CNN features from image files).",
    )
    parser.add_argument("--data", choices=("digits", "patches"), default="digits",
                        help="which part of the tour to run (default digits)")
    parser.add_argument("--n-components", type=int, default=None,
                        help="width of every representation (default 16 for "
                        "digits, 64 filters for patches)")
    parser.add_argument("--quick", action="store_true",
                        help="few training epochs (a smoke run)")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="also write PNG figures (components, reconstructions, "
                        "latent spaces, loss curves, samples, CNN kernels and "
                        "feature maps; filters for patches) into DIR; needs "
                        "matplotlib (the 'plot' extra)")
    args = parser.parse_args(argv)
    n_components = args.n_components
    if n_components is None:
        n_components = 64 if args.data == "patches" else 16
    if n_components < 1:
        parser.error(f"--n-components must be >= 1, got {n_components}")

    # Only valid arguments pay for loading the tour's libraries.
    from . import _tour as tour

    def log(line):
        print(line, file=sys.stderr, flush=True)

    if args.data == "patches":
        rows, X_test, to_pixels = tour.run_patch_tour(
            n_components, quick=args.quick, random_state=args.random_state, log=log)
        print(tour.format_patch_table(rows, n_components))
        paths = []
        if args.plot:
            log(f"writing figures to {args.plot} ...")
            paths = tour.write_patch_figures(rows, X_test, to_pixels, args.plot)
    else:
        rows, X_test, y_test = tour.run_tour(n_components, quick=args.quick,
                                             random_state=args.random_state,
                                             log=log)
        print(tour.format_table(rows, n_components))
        paths = []
        if args.plot:
            log(f"writing figures to {args.plot} ...")
            paths = tour.write_figures(rows, X_test, y_test, args.plot)
    for path in paths:
        log(f"  {path}")
    return 0
