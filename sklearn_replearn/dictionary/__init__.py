"""DictionaryLearner: sparse codes over a learned dictionary, optionally
supervised by labels (task-driven dictionary learning).

Modules: ``_estimator`` (the API: parameters, validation, fit, transform,
score), ``_state`` (the fitted state and how it becomes training objects and
back), ``_checks`` (data checks of fit and partial_fit), ``_online`` (online
dictionary learning, Mairal et al. 2010) and ``_task_driven`` (the supervised
phase, Mairal et al. 2012). The coders they call are in ``sparse/``.
"""

from ._estimator import DictionaryLearner

__all__ = ["DictionaryLearner"]
