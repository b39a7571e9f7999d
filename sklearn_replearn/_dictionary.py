"""DictionaryLearner: sparse codes over a learned dictionary, optionally supervised."""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .base import BaseRepresentation
from .exceptions import TrainingDivergedError
from .sparse import (
    differentiable_lasso_codes,
    init_dictionary,
    lasso_active_set,
    lasso_objective,
    lasso_working_set,
    lipschitz_constant,
    omp,
    project_atoms,
    threshold_codes,
    update_dictionary,
    update_inner_stats,
)
from .utils import as_tensor, iter_row_batches, resolve_device, seeded, to_numpy

__all__ = ["DictionaryLearner"]

# Names accepted for the lasso problem (scikit-learn's solvers are all solved by
# FISTA here: same problem, same solution).
_LASSO_ALGORITHMS = {"lasso_fista", "lasso_lars", "lasso_cd"}
# The lasso coder while fitting: Newton steps on each sample's active set,
# warm-started from its code of the previous epoch (2-5 steps once the
# dictionary settles), each sample stopping when its duality gap is below 0.1%
# of its objective. The few samples whose support changed a lot (in the first
# epochs) get a short first-order finish: 60 iterations in all. A longer one
# did not lower the objective reached per epoch (digits, k=64, with
# forget_exponent=1: cap 200 took 5 epochs to reach scikit-learn's 10-epoch
# objective, cap 60 took 4) and cost up to half of the fit's time.
_FIT_CODER_MAX_ITER = 60
_FIT_CODER_TOL = 1e-3
# Rows coded at once by transform and score (at least): the batched coders'
# iterations cost mostly per-operation overhead below a few thousand rows
# (digits patches, k=64: 256-row chunks took 3.8x as long as 4096-row ones).
_CODING_CHUNK_ROWS = 8192
# L2 penalty on the weights of the supervised (logistic) head, per sample. A
# head that is not allowed to grow keeps a margin-seeking cross-entropy, so the
# task gradient still shapes the dictionary once the training codes are
# separable (chosen with supervision_weight by inner cross-validation, see
# ``fit``'s notes in the class docstring).
_HEAD_L2 = 1e-2
# Supervised fits start from a label-consistent dictionary (Jiang, Lin &
# Davis, 2013): the unsupervised phase learns atoms over samples extended by
# their one-hot label times this fraction of the mean sample norm (about 2 on
# digits scaled to [0, 1]), so each atom leans to a class; the label part is
# then dropped and the atoms rescaled to unit norm.
_LABEL_SCALE = 0.5
# Two regularisers of the supervised phase, chosen by inner cross-validation
# (see the class Notes). Each minibatch is coded with Gaussian noise added to
# its samples, of this fraction of the data's feature spread (the root mean
# square of the features' standard deviations), so the atoms must separate
# the classes of nearby inputs too, not just of the training samples...
_INPUT_NOISE = 0.3
# ... and the head's cross-entropy targets are smoothed by this much (the
# true class gets 1 - 0.1 + 0.1 / n_classes), which keeps the task gradient
# shaping the atoms once the training codes are separable.
_LABEL_SMOOTHING = 0.1
# The supervised phase keeps an exponential moving average of its
# dictionaries, from its first step on (this weight on the past per step), and
# returns it: the average of the last few dozen Adam iterates generalised
# better than the last iterate (see the class Notes).
_DICTIONARY_AVERAGE = 0.95


class DictionaryLearner(BaseRepresentation):
    """Sparse dictionary learning in torch: sparse codes as features.

    Learns a dictionary of ``n_components`` atoms (rows of ``components_``,
    norm at most one) such that each sample is well approximated by a sparse
    combination of atoms, by minimising, as scikit-learn's
    :class:`~sklearn.decomposition.MiniBatchDictionaryLearning` does::

        mean over samples of  0.5 * ||x - code @ components_||^2 + alpha * ||code||_1

    with online dictionary learning (Mairal et al., 2010): minibatch codes by
    batched Newton steps on each sample's active set, warm-started from its
    code of the previous epoch (``sparse.lasso_active_set``), sufficient
    statistics with forgetting, and block-coordinate atom updates.

    With labels (``fit(X, y)`` and ``supervision_weight > 0``) the dictionary
    is learned jointly with a multinomial logistic head on the codes:
    task-driven dictionary learning (Mairal, Bach & Ponce, 2012). The loss is
    the objective above plus ``supervision_weight`` times the cross-entropy of
    the head, differentiated through the lasso codes on their active set.
    ``transform`` stays the sparse coding; put a classifier after it in a
    pipeline. A supervised fit has two phases of up to ``max_iter`` epochs:
    a label-consistent start (Jiang, Lin & Davis, 2013: unsupervised
    dictionary learning on each sample extended by its one-hot label times
    half the mean sample norm, whose atoms are then cut back to the features
    and rescaled to unit norm), then the joint training, which returns the
    moving average of its dictionaries (weight 0.95 per step) with the head
    refitted to it. The joint phase is regularised: each minibatch is coded
    with Gaussian noise added to its samples, and the head's targets are
    smoothed (see Notes).

    Parameters
    ----------
    n_components : int, default=None
        Number of atoms. None uses ``n_features``.
    alpha : float, default=1.0
        Weight of the L1 penalty on the codes during fit (sparsity), with the
        same scaling as scikit-learn's ``MiniBatchDictionaryLearning``.
    supervision_weight : float, default=60.0
        Weight of the classification loss when ``fit`` gets labels. 0 ignores
        ``y`` (unsupervised dictionary learning even inside a supervised
        pipeline).
    max_iter : int, default=30
        Maximum number of epochs (passes over the data) of each phase: a
        supervised fit runs up to ``max_iter`` unsupervised epochs, then up to
        ``max_iter`` joint epochs with the labels (``n_iter_`` counts both).
    batch_size : int, default=256
        Samples per minibatch while fitting. ``transform`` and ``score`` code
        X in chunks of at least 8192 rows: below that, a coder iteration's
        cost is mostly fixed per-operation overhead.
    learning_rate : float, default=3e-2
        Adam step size of the supervised updates (the unsupervised updates
        need none).
    tol : float or None, default=1e-3
        Stop when the epoch objective improved by less than ``tol`` (relative)
        for ``n_iter_no_change`` consecutive epochs. None runs ``max_iter``
        epochs.
    n_iter_no_change : int, default=2
        Epochs without relative improvement of ``tol`` before stopping.
    forget_exponent : float, default=4.0
        How fast the sufficient statistics forget old minibatches: each step
        multiplies them by scikit-learn's forgetting factor raised to this
        power (Mairal et al. 2010, section 3.4). 1 is scikit-learn's schedule,
        where minibatch ``s`` weighs about ``s`` (early in training), so the
        first ones, coded with poor dictionaries, fade slowly; 0 weighs all
        alike; 4 weighs them about like ``s**4``. On digits (k=64, alpha=1) 4
        reached scikit-learn's 10-epoch objective in 3 epochs instead of 4-5
        and stayed lower after 10 and 20 epochs (3.816 vs 3.822 at 10).
    transform_algorithm : {"lasso_fista", "lasso_lars", "lasso_cd", "omp", \
"threshold"}, default="lasso_fista"
        Sparse coder of ``transform``. ``"lasso_fista"`` solves the lasso
        ``0.5 * ||x - code @ components_||^2 + transform_alpha * ||code||_1``
        by batched FISTA; ``"lasso_lars"`` and ``"lasso_cd"`` are accepted as
        scikit-learn's names for the same problem and are solved the same way.
        ``"omp"``: orthogonal matching pursuit with
        ``transform_n_nonzero_coefs`` atoms. ``"threshold"``: soft thresholding
        of ``X @ components_.T`` at ``transform_alpha``.
    transform_alpha : float, default=None
        L1 penalty (lasso) or threshold (``"threshold"``) of ``transform``.
        None uses ``alpha``.
    transform_n_nonzero_coefs : int, default=None
        Atoms per sample for ``"omp"``. None uses
        ``min(max(n_features // 10, 1), n_components)``, as scikit-learn.
    transform_max_iter : int, default=1000
        Maximum iterations of the lasso coder in ``transform`` and ``score``
        (FISTA's, working-set rounds included).
    transform_tol : float, default=1e-4
        Each sample's lasso code in ``transform`` and ``score`` stops once its
        duality gap certifies an objective within a factor
        ``1 + transform_tol`` of the optimum. ``1e-2`` (within 1%) codes
        2-3x faster. In float32, values below ~1e-6 are rounding noise: the
        coder then runs ``transform_max_iter`` iterations.
    positive_code : bool, default=False
        Constrain codes to be non-negative (not available with ``"omp"``).
    positive_dict : bool, default=False
        Constrain atoms to be non-negative.
    device : str or torch.device, default="auto"
        "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    random_state : int, RandomState instance or None, default=None
        Seeds the initial dictionary, the minibatch order, resampled atoms and
        the input noise of supervised epochs. torch's global RNG is left
        untouched.
    verbose : int, default=0
        0 silent, 1 a progress bar over epochs, 2 a line per epoch.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features_in_)
        The dictionary atoms, one per row, each of norm at most one.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.
    n_iter_ : int
        Epochs run (all ``fit``/``partial_fit`` calls since the last ``fit``).
    n_steps_ : int
        Minibatch updates run.
    loss_curve_ : list of float
        Mean training loss of each epoch: the objective above (in a
        supervised fit's first phase, over the label-extended samples), plus
        ``supervision_weight`` times the cross-entropy (with smoothed targets)
        in supervised epochs, whose objective is over the noise-perturbed
        samples.
    classes_ : ndarray of shape (n_classes,)
        Labels of the supervised head (only after a supervised fit).
    head_coef_ : ndarray of shape (n_classes, n_components)
        Weights of the supervised logistic head (only after a supervised fit).
    head_intercept_ : ndarray of shape (n_classes,)
        Intercepts of the supervised head (only after a supervised fit).

    See Also
    --------
    sklearn.decomposition.MiniBatchDictionaryLearning : The scikit-learn
        estimator with the same objective.
    sklearn.decomposition.sparse_encode : scikit-learn's sparse coders.

    Notes
    -----
    Atoms are constrained to the unit ball (norm at most one), the convex
    constraint of Mairal et al.; atoms that the codes use end with unit norm.
    Codes are computed in float32 and returned in the input's float dtype.

    The supervised defaults (``supervision_weight=60``, head L2 penalty 1e-2
    per sample, ``learning_rate=3e-2``, label scale, average weight 0.95)
    were chosen by nested cross-validation on digits scaled to [0, 1] with
    ``n_components=64``: for each of the 5 unshuffled outer training sets,
    3-fold unshuffled inner CV of ``DictionaryLearner -> StandardScaler ->
    LogisticRegression``, never looking at the outer test folds. Mean inner
    accuracy over random_state 0 and 1: unsupervised 0.940; joint training
    alone 0.952; with the averaged dictionary 0.955; with the label-consistent
    start too 0.956 (weight 30), 0.958 with weight 60, 0.957 with 100.

    The joint phase codes each minibatch with Gaussian noise added to its
    samples (standard deviation 0.3 times the root mean square of the
    features' standard deviations, 0.081 on digits scaled to [0, 1], measured
    on the first supervised data and kept with the model) and smooths the
    head's cross-entropy targets by 0.1. Both were chosen by the same nested
    CV, over random_state 0-3, keeping a change only when it scored higher on
    each of the four seeds and neighbouring settings agreed. With this code:
    0.9557 with neither, 0.9599 with both (higher on each seed). The screening
    ran on the code before it, which also updated the joint phase's warm
    starts (0.9545 with neither): absolute noise 0.05, 0.1 and 0.2 alone
    0.9571, 0.9573 and 0.9525; smoothing 0.1, 0.2 and 0.3 alone 0.9577,
    0.9584 and 0.9582; noise 0.07-0.1 with smoothing 0.1, 0.9598-0.9601.
    Rejected there: mixup (0.9565), masking noise (0.948), noise on the codes
    (0.9593: no gain), smoothing the refitted head too (0.9583), a fixed
    number of joint epochs (8: 0.9556, 15: 0.9591, 25: 0.9609, 40: 0.9588,
    60: 0.9598, no trend), refitting the head every epoch (0.9518), average
    weights 0.9 and 0.98 (0.9590, 0.9554), ``learning_rate=0.05`` (0.9558);
    and with this code: noise scaled per feature (0.9584), warm starts from
    the noisy codes (0.9594), head penalties 1e-3 to 3e-2 and label scales
    0.35 and 0.75 (0.9581-0.9614, no trend).

    References
    ----------
    Mairal, J., Bach, F., Ponce, J., & Sapiro, G. (2010). Online learning for
    matrix factorization and sparse coding. JMLR, 11, 19-60.

    Mairal, J., Bach, F., & Ponce, J. (2012). Task-driven dictionary learning.
    IEEE TPAMI, 34(4), 791-804.

    Jiang, Z., Lin, Z., & Davis, L. S. (2013). Label consistent K-SVD:
    learning a discriminative dictionary for recognition. IEEE TPAMI, 35(11),
    2651-2664.

    Beck, A., & Teboulle, M. (2009). A fast iterative shrinkage-thresholding
    algorithm for linear inverse problems. SIAM J. Imaging Sciences, 2(1).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_replearn import DictionaryLearner
    >>> X = np.random.RandomState(0).rand(60, 10)
    >>> dl = DictionaryLearner(n_components=6, alpha=0.1, max_iter=3,
    ...                        random_state=0, device="cpu")
    >>> codes = dl.fit_transform(X)
    >>> codes.shape
    (60, 6)
    >>> dl.components_.shape
    (6, 10)
    >>> dl.inverse_transform(codes).shape
    (60, 10)

    With labels, the dictionary also serves a linear classifier on the codes:

    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> dl.fit(X, y).head_coef_.shape
    (2, 6)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "supervision_weight": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "forget_exponent": [Interval(Real, 0, None, closed="left")],
        "transform_algorithm": [
            StrOptions({"lasso_fista", "lasso_lars", "lasso_cd", "omp", "threshold"})
        ],
        "transform_alpha": [Interval(Real, 0, None, closed="left"), None],
        "transform_n_nonzero_coefs": [Interval(Integral, 1, None, closed="left"), None],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_tol": [Interval(Real, 0, None, closed="left")],
        "positive_code": ["boolean"],
        "positive_dict": ["boolean"],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=None,
        *,
        alpha=1.0,
        supervision_weight=60.0,
        max_iter=30,
        batch_size=256,
        learning_rate=3e-2,
        tol=1e-3,
        n_iter_no_change=2,
        forget_exponent=4.0,
        transform_algorithm="lasso_fista",
        transform_alpha=None,
        transform_n_nonzero_coefs=None,
        transform_max_iter=1000,
        transform_tol=1e-4,
        positive_code=False,
        positive_dict=False,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.alpha = alpha
        self.supervision_weight = supervision_weight
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.forget_exponent = forget_exponent
        self.transform_algorithm = transform_algorithm
        self.transform_alpha = transform_alpha
        self.transform_n_nonzero_coefs = transform_n_nonzero_coefs
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.positive_code = positive_code
        self.positive_dict = positive_dict
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the dictionary from X (and, with labels, for predicting y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,), default=None
            Class labels. When given and ``supervision_weight > 0``, the
            dictionary is learned jointly with a logistic head on the codes
            (task-driven dictionary learning). None: unsupervised.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._check_param_combination()
        X = self._validate_X(X, reset=True)
        supervised = y is not None and self.supervision_weight > 0
        if supervised:
            classes, y_index = self._encode_labels(y, X.shape[0], classes=None)
        n_components = self._resolved_n_components(X.shape[1])
        device = resolve_device(self.device)
        X_t = as_tensor(X, device=device)
        with seeded(self.random_state, device):
            # A supervised fit starts from a label-consistent dictionary: the
            # first phase sees each sample extended by its scaled label.
            X_first = _with_labels(X_t, y_index, len(classes)) if supervised else X_t
            state = _State.initial(X_first, n_components, self.positive_dict)
            codes = X_t.new_zeros((X.shape[0], n_components))
            self._run_epochs(
                state, X_first, None, codes, n_epochs=self.max_iter, tol=self.tol,
                progress=True,
            )
            if supervised:
                state.drop_label_part(X.shape[1], self.positive_dict)
                state.add_head(len(classes))
            if supervised and not state.interrupted:
                y_t = torch.as_tensor(y_index, dtype=torch.long, device=device)
                # Start the head at the logistic regression on the codes over
                # that dictionary, then train dictionary and head together.
                codes = self._training_codes(state, X_t, codes)
                _fit_head(state, codes, y_t)
                state.converged = False
                state.averaging = True
                self._run_epochs(
                    state, X_t, y_index, codes, n_epochs=self.max_iter,
                    tol=self.tol, progress=True,
                )
                state.averaging = False
                if not state.interrupted and state.average is not None:
                    # Return the averaged dictionary, with the head refitted
                    # to its codes so that head_coef_ matches components_.
                    # (Interrupted: the last iterate and its head, at once.)
                    state.dictionary = state.average
                    codes = self._training_codes(state, X_t, codes)
                    _fit_head(state, codes, y_t)
                    # Adam's moments belong to the last iterate: a later
                    # partial_fit starts a fresh Adam from the average.
                    state.optimizer_state = None
                state.average = None
        self._store(state, X.dtype, classes if supervised else None, reset=True)
        if self.tol is not None and not (state.converged or state.interrupted):
            warnings.warn(
                f"DictionaryLearner stopped at max_iter={self.max_iter} epochs while "
                f"the objective was still improving by more than tol={self.tol}; "
                "increase max_iter for a better fit.",
                ConvergenceWarning,
            )
        return self

    def partial_fit(self, X, y=None, classes=None):
        """Run one epoch of minibatch updates on X, continuing the current fit.

        The first call initialises the dictionary from X; later calls must
        pass data with the same number of features. Unlike ``fit``, codes are
        not warm-started across calls. Supervised calls continue one Adam
        optimizer (its moments are kept with the model, pickles included),
        at the current ``learning_rate``. The scale of their input noise (see
        Notes) is measured on the first supervised chunk of at least two
        rows and kept from then on: make that chunk representative (shuffled
        classes), as for the first call's initial dictionary.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,), default=None
            Class labels of the chunk for supervised updates (used when
            ``supervision_weight > 0``).
        classes : array-like of shape (n_classes,), default=None
            All labels that will ever appear, needed on the first supervised
            call when the first chunk does not show every class. Defaults to
            the labels of the first supervised chunk.

        Returns
        -------
        self : object
            The estimator, updated with one more epoch.
        """
        first_call = not hasattr(self, "components_")
        if first_call:
            self._validate_params()
            self._check_param_combination()
        X = self._validate_X(X, reset=first_call)
        supervised = y is not None and self.supervision_weight > 0
        has_head = hasattr(self, "classes_")
        if supervised:
            known = self.classes_ if has_head else classes
            head_classes, y_index = self._encode_labels(y, X.shape[0], classes=known)
        device = self._inference_device() if not first_call else resolve_device(
            self.device)
        X_t = as_tensor(X, device=device)
        offset = 0 if first_call else self.n_iter_
        with seeded(self.random_state, device, offset=offset):
            if first_call:
                n_components = self._resolved_n_components(X.shape[1])
                state = _State.initial(X_t, n_components, self.positive_dict)
            else:
                state = _State.from_estimator(self, device)
            if supervised and state.head_coef is None:
                state.add_head(len(head_classes))
            codes = X_t.new_zeros((X.shape[0], state.dictionary.shape[0]))
            self._run_epochs(
                state, X_t, y_index if supervised else None, codes,
                n_epochs=1, tol=None, progress=False,
            )
        new_classes = head_classes if supervised and not has_head else None
        self._store(state, X.dtype, new_classes, reset=first_call)
        return self

    # ------------------------------------------------------------- helpers
    def _check_param_combination(self):
        if self.positive_code and self.transform_algorithm == "omp":
            raise ValueError(
                "positive_code=True is not available with transform_algorithm='omp' "
                "(OMP codes can be negative); use transform_algorithm='lasso_fista' "
                "or 'threshold', or positive_code=False."
            )

    def _resolved_n_components(self, n_features):
        return n_features if self.n_components is None else int(self.n_components)

    def _encode_labels(self, y, n_samples, classes):
        """Labels as indices into ``classes`` (the sorted labels of y by default)."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(
                f"y must be a 1-D array of class labels; got an array of shape "
                f"{y.shape}. Pass one label per sample, or y=None (or "
                "supervision_weight=0) for unsupervised learning."
            )
        if y.shape[0] != n_samples:
            raise ValueError(
                f"y has {y.shape[0]} labels but X has {n_samples} samples; pass one "
                "label per row of X."
            )
        y = column_or_1d(y)
        target_type = type_of_target(y, input_name="y")
        if target_type == "unknown":
            raise ValueError(
                f"Unknown label type: y of dtype {y.dtype} holds no class labels "
                "sklearn can read (e.g. Python objects). Pass integer or string "
                "labels, or supervision_weight=0 to learn the dictionary without y."
            )
        if target_type not in ("binary", "multiclass"):
            raise ValueError(
                f"Supervised dictionary learning needs class labels, but y is "
                f"{target_type!r} (e.g. {y[:3].tolist()}). Pass class labels, or "
                "supervision_weight=0 to learn the dictionary without y."
            )
        if classes is None:
            classes, y_index = np.unique(y, return_inverse=True)
            return classes, y_index
        classes = np.asarray(classes)
        unseen = np.setdiff1d(y, classes)
        if unseen.size:
            raise ValueError(
                f"y contains labels {unseen[:5].tolist()} that are not among the "
                f"classes {classes.tolist()} of the first supervised partial_fit "
                "call; pass classes=<all labels> on that first call."
            )
        sorted_classes = np.unique(classes)
        return sorted_classes, np.searchsorted(sorted_classes, y)

    def _run_epochs(self, state, X, y_index, codes, *, n_epochs, tol, progress):
        """Train ``state`` in place for up to ``n_epochs`` passes over X."""
        n_samples = X.shape[0]
        y_t = None
        if y_index is not None:
            y_t = torch.as_tensor(y_index, dtype=torch.long, device=X.device)
            optimizer = state.make_optimizer(self.learning_rate)
            if state.noise_std is None and X.shape[0] >= 2:
                # Measured on the first supervised data that has a spread, then
                # kept with the model (later partial_fit chunks may be small).
                # Until then (one-row chunks) supervised steps add no noise.
                state.noise_std = _INPUT_NOISE * _feature_spread(X)
        bar = None
        if progress and self.verbose == 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_epochs, desc="DictionaryLearner", unit="epoch")
        stalled = 0
        # Compare epochs of this phase only: the supervised objective has a
        # loss term the unsupervised epochs before it did not.
        phase_start = len(state.loss_curve)
        try:
            for _ in range(n_epochs):
                order = torch.randperm(n_samples, device=X.device)
                total = 0.0
                for rows in iter_row_batches(n_samples, self.batch_size):
                    index = order[rows]
                    if y_t is None:
                        batch_loss = self._unsupervised_step(state, X[index], codes,
                                                             index)
                    else:
                        batch_loss = self._supervised_step(
                            state, optimizer, X[index], y_t[index], codes, index
                        )
                    total += batch_loss
                    state.n_steps += 1
                epoch_loss = total / max(n_samples, 1)
                if not math.isfinite(epoch_loss):
                    raise TrainingDivergedError(
                        f"DictionaryLearner's training loss became {epoch_loss} at "
                        f"epoch {state.n_epochs + 1}; lower learning_rate (now "
                        f"{self.learning_rate}) or supervision_weight (now "
                        f"{self.supervision_weight}), or scale X to a moderate range."
                    )
                previous = (state.loss_curve[-1]
                            if len(state.loss_curve) > phase_start else None)
                state.loss_curve.append(epoch_loss)
                state.n_epochs += 1
                if self.verbose >= 2:
                    print(f"DictionaryLearner epoch {state.n_epochs}: "
                          f"loss {epoch_loss:.6g}")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{epoch_loss:.4g}")
                if tol is not None and previous is not None:
                    improvement = (previous - epoch_loss) / max(abs(previous), 1e-12)
                    stalled = stalled + 1 if improvement < tol else 0
                    if stalled >= self.n_iter_no_change:
                        state.converged = True
                        break
        except KeyboardInterrupt:
            # Keep the dictionary learned so far: it is a usable model.
            state.interrupted = True
            warnings.warn(
                f"DictionaryLearner was interrupted after {state.n_epochs} epochs; "
                "the dictionary learned so far is kept.",
                UserWarning,
            )
        finally:
            if bar is not None:
                bar.close()
            if y_t is not None:
                # Adam's moments carry over to the next partial_fit call.
                state.optimizer_state = optimizer.state_dict()

    def _fit_codes(self, X, D, init):
        """Lasso codes of a training batch, warm-started from ``init``."""
        Z, _ = lasso_active_set(
            X, D, self.alpha, init=init, max_iter=_FIT_CODER_MAX_ITER,
            tol=_FIT_CODER_TOL, positive=self.positive_code,
        )
        return Z

    def _training_codes(self, state, X, codes):
        """Codes of all of X over the current dictionary (warm-started)."""
        with torch.no_grad():
            return torch.cat([
                self._fit_codes(X[rows], state.dictionary, codes[rows])
                for rows in iter_row_batches(X.shape[0], self._coding_rows())
            ])

    def _unsupervised_step(self, state, X, codes, index):
        """One online dictionary-learning step (Mairal et al. 2010) on a batch."""
        D = state.dictionary
        Z = self._fit_codes(X, D, codes[index])
        batch_loss = float(lasso_objective(X, D, Z, self.alpha).sum())
        update_inner_stats(state.A, state.B, Z, X, state.n_steps,
                           forget_exponent=self.forget_exponent)
        update_dictionary(D, state.A, state.B, X, Z, positive=self.positive_dict)
        codes[index] = Z
        return batch_loss

    def _supervised_step(self, state, optimizer, X, y, codes, index):
        """One task-driven step: lasso codes, head, and a gradient step on both."""
        D = state.dictionary
        with torch.no_grad():
            if state.noise_std:
                X = X + state.noise_std * torch.randn_like(X)
            # Warm start from the clean sample's code (in fit, over the
            # dictionary the joint phase started from; zeros in partial_fit),
            # left as it is: the noisy sample's code is a few coder
            # iterations away (7 on average on digits).
            Z = self._fit_codes(X, D, codes[index])
        with torch.enable_grad():
            D.requires_grad_(True)
            differentiable = differentiable_lasso_codes(X, D, Z)
            logits = differentiable @ state.head_coef.T + state.head_intercept
            task = _head_loss(logits, y)
            # Envelope theorem: at the lasso solution the objective's gradient in
            # D is its partial derivative with the codes held fixed.
            objective = lasso_objective(X, D, Z, self.alpha).sum()
            penalty = 0.5 * _HEAD_L2 * X.shape[0] * state.head_coef.pow(2).sum()
            loss = objective + self.supervision_weight * task
            optimizer.zero_grad(set_to_none=True)
            ((loss + penalty) / X.shape[0]).backward()
            optimizer.step()
            D.requires_grad_(False)
        with torch.no_grad():
            project_atoms(D, positive=self.positive_dict)
            if state.averaging:
                if state.average is None:
                    state.average = D.clone()
                else:
                    state.average.lerp_(D, 1.0 - _DICTIONARY_AVERAGE)
        return float(loss.detach())

    def _store(self, state, dtype, classes, *, reset):
        """Copy the trained state into fitted attributes (numpy, picklable)."""
        self.components_ = to_numpy(state.dictionary, dtype=dtype)
        self._A = to_numpy(state.A)
        self._B = to_numpy(state.B)
        self.n_iter_ = state.n_epochs
        self.n_steps_ = state.n_steps
        self._optimizer_state = (None if state.optimizer_state is None else
                                 _map_tensors(state.optimizer_state, to_numpy))
        self.loss_curve_ = list(state.loss_curve)
        self._input_noise_std = state.noise_std
        if reset:
            for name in ("classes_", "head_coef_", "head_intercept_"):
                if hasattr(self, name):
                    delattr(self, name)
        if state.head_coef is not None:
            if classes is not None:
                self.classes_ = classes
            self.head_coef_ = to_numpy(state.head_coef, dtype=dtype)
            self.head_intercept_ = to_numpy(state.head_intercept, dtype=dtype)

    # ------------------------------------------------------------ inference
    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def _coding_rows(self):
        """Rows coded at once by ``transform`` and ``score``."""
        return max(self.batch_size, _CODING_CHUNK_ROWS)

    def _lasso_coder(self, D, gram, alpha):
        """Lasso codes of a batch over ``D`` at ``alpha`` (transform and score)."""
        lipschitz = lipschitz_constant(gram)

        def code(batch):
            Z, _ = lasso_working_set(
                batch, D, alpha, max_iter=self.transform_max_iter,
                tol=self.transform_tol, positive=self.positive_code, gram=gram,
                lipschitz=lipschitz,
            )
            return Z

        return code

    def _coder(self, algorithm, device):
        """A function mapping a float32 batch to its codes, for ``_batched``."""
        D = as_tensor(self.components_, device=device)
        gram = D @ D.T
        alpha = self.alpha if self.transform_alpha is None else self.transform_alpha
        if algorithm in _LASSO_ALGORITHMS:
            code = self._lasso_coder(D, gram, alpha)

        elif algorithm == "omp":
            if self.positive_code:
                self._check_param_combination()
            n_nonzero = self.transform_n_nonzero_coefs
            if n_nonzero is None:
                n_nonzero = min(max(self.n_features_in_ // 10, 1), D.shape[0])

            def code(batch):
                return omp(batch, D, n_nonzero, gram=gram)

        else:

            def code(batch):
                return threshold_codes(batch, D, alpha, positive=self.positive_code)

        return code

    def transform(self, X):
        """Sparse codes of X over the learned dictionary.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to encode.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            Codes from ``transform_algorithm``, in X's float dtype.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        device = self._inference_device()
        coder = self._coder(self.transform_algorithm, device)
        return self._batched(coder, X, self._n_features_out, device,
                             batch_size=self._coding_rows())

    def inverse_transform(self, X):
        """Reconstruct samples from codes: ``codes @ components_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by ``transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_)
            The reconstruction, in the codes' float dtype.
        """
        codes = self._validate_codes(X)
        return codes @ self.components_.astype(codes.dtype, copy=False)

    def score(self, X, y=None):
        """Minus the mean lasso objective of X (higher is better).

        The codes are the lasso solutions at ``alpha`` (whatever
        ``transform_algorithm``), so the score is the negated training
        objective ``0.5 * ||x - code @ components_||^2 + alpha * ||code||_1``
        averaged over samples, comparable across models and with
        scikit-learn's ``MiniBatchDictionaryLearning``. Each sample's code is
        certified within a factor ``1 + transform_tol`` of its optimum, so
        the score is at most that much below the exact one: compare models
        at the same ``transform_tol``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to encode.
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        device = self._inference_device()
        D = as_tensor(self.components_, device=device)
        code = self._lasso_coder(D, D @ D.T, self.alpha)

        def objective(batch):
            return lasso_objective(batch, D, code(batch), self.alpha)[:, None]

        values = self._batched(objective, X, 1, device, batch_size=self._coding_rows())
        return -float(np.mean(values, dtype=np.float64))


def _fit_head(state, codes, y, max_iter=100):
    """Multinomial logistic regression of ``y`` on fixed codes (L-BFGS).

    Initialises the supervised head before the joint training.
    """
    n_samples = codes.shape[0]
    coef = state.head_coef.detach().clone().requires_grad_(True)
    intercept = state.head_intercept.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [coef, intercept], max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        # Plain cross-entropy: the head is the L2-penalised logistic regression
        # on the codes (smoothed targets here lowered inner-CV accuracy).
        logits = codes @ coef.T + intercept
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        loss = (loss + 0.5 * _HEAD_L2 * n_samples * coef.pow(2).sum()) / n_samples
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    state.head_coef = coef.detach()
    state.head_intercept = intercept.detach()


def _head_loss(logits, y):
    """Summed cross-entropy of the supervised head, with smoothed targets."""
    return torch.nn.functional.cross_entropy(
        logits, y, reduction="sum", label_smoothing=_LABEL_SMOOTHING)


def _feature_spread(X):
    """Root mean square of the features' standard deviations."""
    return float(X.var(dim=0, correction=0).mean().sqrt())


def _with_labels(X, y_index, n_classes):
    """X extended by its one-hot labels times ``_LABEL_SCALE`` of the mean
    sample norm (label-consistent dictionary learning: atoms fitted to these
    rows lean to one class, whatever the scale of X)."""
    labels = torch.as_tensor(y_index, dtype=torch.long, device=X.device)
    one_hot = torch.nn.functional.one_hot(labels, n_classes).to(X.dtype)
    scale = _LABEL_SCALE * torch.linalg.vector_norm(X, dim=1).mean()
    return torch.cat([X, scale * one_hot], dim=1)


def _map_tensors(tree, function):
    """``tree`` (nested dicts and lists) with ``function`` applied to each tensor
    or array leaf: optimizer state dicts to numpy (picklable anywhere) and back."""
    if isinstance(tree, dict):
        return {key: _map_tensors(value, function) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_map_tensors(value, function) for value in tree]
    if isinstance(tree, (torch.Tensor, np.ndarray)):
        return function(tree)
    return tree


class _State:
    """Training state in torch: dictionary, sufficient statistics, head."""

    def __init__(self, dictionary, A, B):
        self.dictionary = dictionary
        self.A = A
        self.B = B
        self.head_coef = None
        self.head_intercept = None
        # Standard deviation of the input noise of supervised steps (None
        # until the first supervised epoch sets it from the data).
        self.noise_std = None
        # Adam's state_dict after the last supervised epochs (None: fresh Adam).
        self.optimizer_state = None
        # Moving average of the dictionary in fit's supervised phase, kept
        # while ``averaging`` (None until its first step).
        self.averaging = False
        self.average = None
        self.n_steps = 0
        self.n_epochs = 0
        self.loss_curve = []
        self.converged = False
        self.interrupted = False

    @classmethod
    def initial(cls, X, n_components, positive_dict):
        # The SVD of a random subset is enough to initialise the atoms.
        n_init = min(X.shape[0], 10_000)
        subset = X[torch.randperm(X.shape[0], device=X.device)[:n_init]]
        D = init_dictionary(subset, n_components, positive=positive_dict)
        A = X.new_zeros((n_components, n_components))
        B = X.new_zeros((n_components, X.shape[1]))
        return cls(D, A, B)

    @classmethod
    def from_estimator(cls, estimator, device):
        state = cls(
            as_tensor(estimator.components_, device=device),
            as_tensor(estimator._A, device=device),
            as_tensor(estimator._B, device=device),
        )
        if hasattr(estimator, "head_coef_"):
            state.head_coef = as_tensor(estimator.head_coef_, device=device)
            state.head_intercept = as_tensor(estimator.head_intercept_, device=device)
        state.noise_std = getattr(estimator, "_input_noise_std", None)
        saved = getattr(estimator, "_optimizer_state", None)
        if saved is not None:
            state.optimizer_state = _map_tensors(
                saved, lambda array: torch.from_numpy(array.copy()))
        state.n_steps = estimator.n_steps_
        state.n_epochs = estimator.n_iter_
        state.loss_curve = list(estimator.loss_curve_)
        return state

    def drop_label_part(self, n_features, positive_dict):
        """Keep the first ``n_features`` columns of the atoms (and of B), the
        atoms rescaled to unit norm: the label-consistent start's dictionary
        over the samples alone."""
        atoms = self.dictionary[:, :n_features]
        norms = torch.linalg.vector_norm(atoms, dim=1, keepdim=True)
        # An atom made only of label (none in practice) stays as it is.
        scale = torch.where(norms > 1e-12, norms, torch.ones_like(norms))
        self.dictionary = project_atoms(atoms / scale, positive=positive_dict)
        # Atom j shrunk by 1/n_j means codes n_j times larger: the statistics
        # follow, so that partial_fit continues consistently.
        self.A = self.A * (scale @ scale.T)
        self.B = self.B[:, :n_features] * scale

    def add_head(self, n_classes):
        n_components = self.dictionary.shape[0]
        self.head_coef = self.dictionary.new_zeros((n_classes, n_components))
        self.head_intercept = self.dictionary.new_zeros(n_classes)

    def make_optimizer(self, learning_rate):
        for tensor in (self.dictionary, self.head_coef, self.head_intercept):
            tensor.requires_grad_(True)
        optimizer = torch.optim.Adam(
            [self.dictionary, self.head_coef, self.head_intercept], lr=learning_rate
        )
        if self.optimizer_state is not None:
            # Continue Adam (partial_fit); load_state_dict moves the moments to
            # the parameters' device. The learning rate is today's parameter.
            optimizer.load_state_dict(self.optimizer_state)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
        self.dictionary.requires_grad_(False)
        return optimizer
