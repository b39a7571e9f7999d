"""Batched sparse coders and dictionary updates in plain torch.

No scikit-learn here: these functions take and return tensors, so they run on
any device and can be tested on their own. ``DictionaryLearner``'s training
loops (online and task-driven dictionary learning) build on them in
``dictionary/``. Dictionaries hold one atom per row, shape
``(n_components, n_features)``, like ``components_``.
"""

from ._active_set import lasso_active_set
from ._coders import (
    lasso_duality_gap,
    lasso_fista,
    lasso_objective,
    lipschitz_constant,
    omp,
    soft_threshold,
    threshold_codes,
)
from ._encode import LASSO_ALGORITHMS, TRANSFORM_ALGORITHMS, make_coder
from ._implicit import differentiable_lasso_codes
from ._updates import (
    init_dictionary,
    project_atoms,
    update_dictionary,
    update_inner_stats,
)
from ._working_set import lasso_working_set

__all__ = [
    "LASSO_ALGORITHMS",
    "TRANSFORM_ALGORITHMS",
    "differentiable_lasso_codes",
    "init_dictionary",
    "lasso_active_set",
    "lasso_duality_gap",
    "lasso_fista",
    "lasso_objective",
    "lasso_working_set",
    "lipschitz_constant",
    "make_coder",
    "omp",
    "project_atoms",
    "soft_threshold",
    "threshold_codes",
    "update_dictionary",
    "update_inner_stats",
]
