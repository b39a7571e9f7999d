"""Exceptions raised by sklearn-replearn."""

__all__ = ["TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """Training produced a NaN or infinite loss and was stopped.

    The message names the epoch and batch and what to change (usually a lower
    ``learning_rate`` or input scaled to a moderate range). The estimator keeps
    no fitted state from the failed run.
    """
