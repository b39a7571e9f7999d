"""Loaders of real data shipped offline with scikit-learn and scikit-image.

``load_patches`` gives whitened natural-image patches (sample photos cut into
small squares, split by image halves) and a function that maps whitened rows
back to pixels; ``filter_localisation`` measures how local learned filters
are on such patches.
"""

from ._image_patches import PATCH_IMAGES, filter_localisation, load_patches

__all__ = ["PATCH_IMAGES", "filter_localisation", "load_patches"]
