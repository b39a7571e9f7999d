"""What a training run leaves for an estimator: the record of its epochs."""

from dataclasses import dataclass, field

from ._net import POLICY_CALLBACK_NAME

__all__ = ["TrainingRecord", "training_record"]


@dataclass
class TrainingRecord:
    """What a training run leaves for the estimator's fitted attributes.

    Only completed epochs count: an epoch cut short by Ctrl-C has no loss.
    """

    loss_curve: list
    valid_curve: list
    terms: dict = field(default_factory=dict)
    converged: bool = False
    interrupted: bool = False

    @property
    def n_epochs(self):
        return len(self.loss_curve)


def training_record(net):
    """The :class:`TrainingRecord` of ``net``'s completed epochs."""
    policy = dict(net.callbacks_)[POLICY_CALLBACK_NAME].policy
    rows = [row for row in net.history if "train_loss" in row]
    term_names = [name for name in (rows[0] if rows else {})
                  if name.startswith("train_") and name not in (
                      "train_loss", "train_batch_count")]
    return TrainingRecord(
        loss_curve=[float(row["train_loss"]) for row in rows],
        valid_curve=[float(row["valid_loss"]) for row in rows if "valid_loss" in row],
        terms={name[len("train_"):]: [float(row[name]) for row in rows]
               for name in term_names},
        converged=policy.converged,
        interrupted=policy.interrupted,
    )
