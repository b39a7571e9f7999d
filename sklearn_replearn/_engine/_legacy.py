"""Names that pickles written by sklearn-replearn 0.1 refer to.

Before the engine became a package (and its callbacks one training policy),
a fitted autoencoder's or VAE's net held callbacks of these classes, pickled
under ``sklearn_replearn._engine.<name>``. They are defined here only so that
such pickles load; :func:`upgrade_callbacks` replaces them with the current
policy callback on load (``ReconstructionNet.__setstate__``). Nothing else
uses them.
"""

from skorch.callbacks import Callback

from ._callbacks import LinearWarmup, LossTermsRecorder, make_policy_callback

__all__ = ["LEGACY_NAMES", "upgrade_callbacks"]


class NonFiniteLossGuard(Callback):
    """0.1's NaN/inf guard (now part of the training policy)."""


class EpochProgressBar(Callback):
    """0.1's progress bar (now part of the training policy)."""


class _EarlyStopping(Callback):
    """0.1's stopping rule (now part of the training policy)."""


def _noop(*args, **kwargs):
    """0.1's silent sink for the stopping rule's messages."""


_LEGACY_CALLBACKS = (NonFiniteLossGuard, EpochProgressBar, _EarlyStopping)

# What ``sklearn_replearn._engine`` must expose for 0.1 pickles to resolve.
LEGACY_NAMES = {
    "NonFiniteLossGuard": NonFiniteLossGuard,
    "EpochProgressBar": EpochProgressBar,
    "_EarlyStopping": _EarlyStopping,
    "_noop": _noop,
    # Current classes that moved from ``_engine`` into its modules.
    "LinearWarmup": LinearWarmup,
    "LossTermsRecorder": LossTermsRecorder,
}


def upgrade_callbacks(net, policy_name):
    """Replace a 0.1 net's guard/stopping/progress callbacks by the policy."""
    has_policy = any(name == policy_name for name, _ in net.callbacks_)
    if has_policy:
        return
    policy = make_policy_callback(
        owner=type(net.module_).__name__, max_iter=net.max_epochs, tol=None,
        n_iter_no_change=1, warmup_epochs=0, verbose=0,
        learning_rate=net.lr, early_stopping=False,
    )
    kept = [(name, callback) for name, callback in net.callbacks
            if not isinstance(callback, _LEGACY_CALLBACKS)
            and name not in ("print_log", "progress_bar")]
    net.callbacks = [*kept, (policy_name, policy)]
    net.callbacks_ = [
        (name, callback) for name, callback in net.callbacks_
        if not isinstance(callback, _LEGACY_CALLBACKS)
        and name not in ("print_log", "progress_bar")
    ] + [(policy_name, policy)]
