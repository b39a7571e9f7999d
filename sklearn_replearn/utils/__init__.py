"""Utilities shared by the estimators (device, dtype, seeding, batching)."""

from ._torch import (
    as_tensor,
    batched_apply,
    iter_row_batches,
    resolve_device,
    seed_from_random_state,
    seeded,
    to_numpy,
)

__all__ = [
    "as_tensor",
    "batched_apply",
    "iter_row_batches",
    "resolve_device",
    "seed_from_random_state",
    "seeded",
    "to_numpy",
]
