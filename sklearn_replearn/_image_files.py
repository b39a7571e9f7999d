"""The file name extensions read as images (torch-free, for the command line)."""

__all__ = ["IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (
    ".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp",
)
