"""Optional dependencies, imported only when a feature needs them."""

import importlib

__all__ = ["import_optional"]


def import_optional(module, *, feature, extra, package=None):
    """Import ``module``, or raise an ImportError that says how to install it.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"matplotlib.pyplot"``.
    feature : str
        What needs it, for the message (e.g. ``"Plotting"``).
    extra : str
        The package extra that brings it (e.g. ``"plot"``).
    package : str, default=None
        The name to ``pip install`` (defaults to the top-level module name).

    Examples
    --------
    >>> import_optional("math", feature="Arithmetic", extra="test").sqrt(4.0)
    2.0
    >>> import_optional("no_such_module_xyz", feature="This demo", extra="demo")
    Traceback (most recent call last):
    ...
    ImportError: This demo needs no_such_module_xyz: pip install ...
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = package or module.split(".")[0]
        raise ImportError(
            f"{feature} needs {package}: pip install 'sklearn-replearn[{extra}]' "
            f"(or pip install {package})."
        ) from exc
