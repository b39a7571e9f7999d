"""Command line: ``python -m sklearn_replearn [tour options]`` runs the tour.

``python -m sklearn_replearn extract ...`` extracts CNN features from image
files (see ``python -m sklearn_replearn extract --help``).
"""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "extract":
        from ._extract import main as extract_main

        return extract_main(argv[1:])
    from ._tour_cli import main as tour_main

    return tour_main(argv)


if __name__ == "__main__":
    sys.exit(main())
