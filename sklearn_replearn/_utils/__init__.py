"""Utilities shared by the estimators: device, dtype, seeding, array<->tensor,
optional imports, scikit-learn compatibility, the training policy."""

from .._path_lists import read_path_list, write_json_lines, write_path_list
from ._image_shape import check_image_shape
from ._optional import import_optional
from ._torch import (
    as_tensor,
    batched_apply,
    fixed_batch_rows,
    iter_row_batches,
    map_tensors,
    padded_rows,
    resolve_device,
    seed_from_random_state,
    seeded,
    to_numpy,
)
from ._training import TrainingPolicy

__all__ = [
    "TrainingPolicy",
    "as_tensor",
    "batched_apply",
    "fixed_batch_rows",
    "check_image_shape",
    "import_optional",
    "iter_row_batches",
    "map_tensors",
    "padded_rows",
    "read_path_list",
    "resolve_device",
    "seed_from_random_state",
    "seeded",
    "to_numpy",
    "write_json_lines",
    "write_path_list",
]
