"""Exceptions and warnings raised by sklearn-replearn."""

__all__ = [
    "IncompatibleModelError",
    "InconsistentVersionWarning",
    "TrainingDivergedError",
]


class TrainingDivergedError(FloatingPointError):
    """Training produced a NaN or infinite loss and was stopped.

    The message names the epoch and batch and what to change (usually a lower
    ``learning_rate`` or input scaled to a moderate range). The estimator keeps
    no fitted state from the failed run.
    """


class InconsistentVersionWarning(UserWarning):
    """A saved estimator is loaded by another sklearn-replearn version.

    As scikit-learn's ``InconsistentVersionWarning``: the model may load and
    run, but nothing promises that it computes what it computed when saved.
    Refit it with the current version, or load it with the one that saved it.

    Parameters
    ----------
    estimator_name : str
        The class of the loaded estimator.
    current_version : str
        The sklearn-replearn version loading it.
    original_version : str or None
        The version that saved it (None: the file records none).
    """

    def __init__(self, *, estimator_name, current_version, original_version):
        self.estimator_name = estimator_name
        self.current_version = current_version
        self.original_version = original_version
        super().__init__(str(self))

    def __str__(self):
        return (
            f"Loading a {self.estimator_name} saved by sklearn-replearn "
            f"{_version_name(self.original_version)} with version "
            f"{self.current_version}: it may compute other results or fail. "
            f"Refit it with {self.current_version}, or load it with "
            f"{_version_name(self.original_version)}."
        )


class IncompatibleModelError(ValueError):
    """A saved estimator whose structure this version cannot read.

    The message names the version that saved it and the one loading it.
    """


def _version_name(version):
    return "an unknown version (the file records none)" if version is None \
        else version
