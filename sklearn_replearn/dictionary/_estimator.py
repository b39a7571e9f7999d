"""DictionaryLearner: sparse codes over a learned dictionary, optionally supervised.

The estimator: parameters, validation, fit and partial_fit, inference. Its
fitted state is a ``FittedDictionary`` (``_state``) written to its attributes;
the training algorithms are ``_online`` and ``_task_driven``, the coders
``sparse/``.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from .._utils import (
    TrainingPolicy,
    as_tensor,
    resolve_device,
    seeded,
)
from .._utils._labels import encode_class_labels
from .._utils._sklearn_compat import (
    Interval,
    StrOptions,
    fit_context,
    validate_params_now,
)
from ..base import BaseRepresentation
from ..sparse import TRANSFORM_ALGORITHMS, lasso_objective, make_coder
from ._checks import (
    check_same_classes,
    check_same_n_components,
    check_squares_fit_float32,
    check_two_classes,
)
from ._online import OnlineDictionaryLearning
from ._state import FittedDictionary, auto_batch_rows, run_online, task_phase
from ._task_driven import Supervision, fit_task_driven

__all__ = ["DictionaryLearner"]

# Rows coded at once by transform and score (at least): the batched coders'
# iterations cost mostly per-operation overhead below a few thousand rows.
_CODING_CHUNK_ROWS = 8192


class DictionaryLearner(BaseRepresentation):
    """Sparse dictionary learning in torch: sparse codes as features.

    Read more in the :ref:`User Guide <guide-dictionary>`.

    Learns a dictionary of ``n_components`` atoms (rows of ``components_``,
    norm at most one) such that each sample is well approximated by a sparse
    combination of atoms, by minimising, as scikit-learn's
    :class:`~sklearn.decomposition.MiniBatchDictionaryLearning` does::

        mean over samples of  0.5 * ||x - code @ components_||^2 + alpha * ||code||_1

    with online dictionary learning (Mairal et al., 2010): minibatch codes by
    a few batched Newton steps on each sample's active set, warm-started from
    its code of the previous epoch (``sparse.lasso_active_set``), sufficient
    statistics with forgetting (replaced by the current codes' when the data
    are one minibatch), and block-coordinate atom updates; atoms no code
    uses are replaced by the rows the codes reconstruct worst.

    With labels (``fit(X, y)`` and ``supervision_weight > 0``) the dictionary
    is learned jointly with a multinomial logistic head on the codes:
    task-driven dictionary learning (Mairal, Bach & Ponce, 2012), the loss
    being the objective above plus ``supervision_weight`` (relative to the
    data's scale) times the head's cross-entropy, differentiated through the
    lasso codes on their active set. ``transform`` stays the sparse coding;
    put a classifier after it. A supervised fit learns an unsupervised
    dictionary (the fallback), holds out ``validation_fraction`` of each
    class, then on the other rows runs a label-consistent start (Jiang, Lin &
    Davis, 2013: atoms learned on the samples extended by their scaled
    one-hot labels, then cut back to the features) and the joint training,
    regularised by input noise and smoothed targets, whose moving average of
    dictionaries it keeps only if a logistic head on its codes predicts the
    held-out labels better than one on the fallback's codes; the head is
    then refitted to all rows (``sparse.fit_task_driven``).

    Parameters
    ----------
    n_components : int, default=None
        Number of atoms. None uses ``n_features``.
    alpha : float, default=1.0
        Weight of the L1 penalty on the codes during fit (sparsity), with the
        same scaling as scikit-learn's ``MiniBatchDictionaryLearning``.
    supervision_weight : float, default=200.0
        Weight of the classification loss when ``fit`` gets labels, relative
        to the data's reconstruction scale: the joint loss is the objective
        above plus ``supervision_weight * s`` times the head's cross-entropy,
        where ``s`` is the mean objective per sample over ``log(n_classes)``
        at the start of the supervised training (measured once, kept with the
        model). At 1 a head at chance costs as much as the reconstruction.
        0 ignores ``y`` (unsupervised dictionary learning even inside a
        supervised pipeline).
    max_iter : int, default=30
        Maximum number of epochs (passes over the data) of each phase: a
        supervised fit runs up to ``max_iter`` unsupervised epochs (stopped by
        ``tol``; twice with ``validation_fraction > 0``: the fallback
        dictionary, then the label-consistent start), then ``max_iter`` joint
        epochs with the labels, whatever ``tol`` (``n_iter_`` counts all).
    batch_size : int or "auto", default="auto"
        Samples per minibatch while fitting. "auto" is 256, except in
        unsupervised fits (and ``partial_fit`` calls) on more than 8192 rows:
        a 32nd of the rows, at most 1024. A minibatch step costs mostly fixed
        per-operation overhead, so on large data, where online learning
        settles within an epoch or two, fewer and larger steps reach an
        objective sooner; on smaller data, where it takes several epochs, more
        and smaller steps per epoch do (the DictionaryLearner benchmark of the
        documentation's benchmarks page).
        ``transform`` and ``score`` code X in chunks of at least 8192 rows:
        below that, a coder iteration's cost is mostly fixed per-operation
        overhead.
    learning_rate : float, default=3e-2
        Adam step size of the supervised updates (the unsupervised updates
        need none).
    tol : float or None, default=1e-3
        Stop a phase when its objective has not improved on its best by more
        than ``tol`` (relative) per epoch for ``n_iter_no_change`` checks. The
        objective is checked once per epoch, except in unsupervised fits on more
        than 8192 rows: once per 8192 rows begun (each check then needs ``tol``
        times its share of an epoch), on a fixed random subset of 1024 rows, so
        that a fit on large data can end within its first epochs. None runs
        ``max_iter`` epochs.
    n_iter_no_change : int, default=2
        Checks without such an improvement before stopping.
    input_noise : float, default=0.3
        Supervised fits only: Gaussian noise added to each joint minibatch,
        as a fraction of the data's feature spread (root mean square of the
        features' standard deviations, measured on the first supervised data
        and kept with the model): the atoms must separate the classes of
        nearby inputs too. 0 adds none.
    label_smoothing : float, default=0.1
        Supervised fits only: smoothing of the joint phase's cross-entropy
        targets (the true class gets ``1 - label_smoothing + label_smoothing
        / n_classes``), which keeps the task shaping the atoms once the
        training codes are separable.
    head_l2 : float, default=1e-2
        Supervised fits only: L2 penalty per sample on the logistic head's
        weights, the head seeing the codes divided by their root-mean-square
        norm at the start of the supervised training (so the penalty does not
        depend on the scale of X).
    label_scale : float, default=0.5
        Supervised fits only: the label-consistent start learns atoms on the
        samples extended by their one-hot labels times this fraction of the
        mean sample norm. 0 starts from an unsupervised dictionary.
    average_decay : float, default=0.95
        Supervised fits only: ``fit`` returns the moving average of the joint
        phase's dictionaries, with this weight on the past per minibatch step
        (0 returns the last iterate).
    validation_fraction : float, default=0.2
        Supervised ``fit`` only: each class's fraction held out to check
        the joint phase: when a logistic head on its codes predicts the
        held-out labels no better (cross-entropy) than one on the codes of
        the unsupervised dictionary of all the rows (also fitted), ``fit``
        returns that dictionary: labels with little signal do not trade the
        reconstruction away for nothing. 0 keeps the joint phase.
    forget_exponent : float, default=4.0
        How fast the sufficient statistics forget old minibatches: each step
        multiplies them by scikit-learn's forgetting factor raised to this
        power (Mairal et al. 2010, section 3.4). 1 is scikit-learn's schedule,
        where minibatch ``s`` weighs about ``s`` (early in training), so the
        first ones, coded with poor dictionaries, fade slowly; 0 weighs all
        alike; 4 weighs them about like ``s**4``, which forgets the first
        minibatches sooner.
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
        ``1 + transform_tol`` of the optimum. ``1e-2`` (within 1%) needs
        fewer iterations, so codes faster. In float32, values below ~1e-6 are
        rounding noise: the coder then runs ``transform_max_iter`` iterations.
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
    components_ : ndarray of shape (n_components, ``n_features_in_``)
        The dictionary atoms, one per row, each of norm at most one.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when X has string column names.
    n_iter_ : int
        Epochs run, the last one possibly cut short by the stopping rule (all
        ``fit``/``partial_fit`` calls since the last ``fit``).
    n_steps_ : int
        Minibatch updates behind the statistics (a later ``partial_fit``'s
        forgetting continues from it); after a supervised fit that fell back
        to its unsupervised dictionary, that fit's updates only.
    loss_curve_ : list of float
        The loss at each check of the stopping rule (``tol``): the mean
        training loss of each epoch, or, in unsupervised fits checked several
        times per epoch, the objective of the fixed subset of rows at each
        check. The training loss is the objective above (in a supervised
        fit's first phase, over the label-extended samples), plus
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

    The supervised defaults (``supervision_weight=200``,
    ``validation_fraction=0.2``) were chosen by nested cross-validation over
    the labelled data sets of ``benchmarks/bench_quality.py``
    (``benchmarks/supervised_margin.py --inner``); what depends on the scale
    of X is measured from X; that script prints the measurements.

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
        "batch_size": [Interval(Integral, 1, None, closed="left"),
                       StrOptions({"auto"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "input_noise": [Interval(Real, 0, None, closed="left")],
        "label_smoothing": [Interval(Real, 0, 1, closed="both")],
        "head_l2": [Interval(Real, 0, None, closed="left")],
        "label_scale": [Interval(Real, 0, None, closed="left")],
        "average_decay": [Interval(Real, 0, 1, closed="right")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "forget_exponent": [Interval(Real, 0, None, closed="left")],
        "transform_algorithm": [
            StrOptions(set(TRANSFORM_ALGORITHMS))
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
        supervision_weight=200.0,
        max_iter=30,
        batch_size="auto",
        learning_rate=3e-2,
        tol=1e-3,
        n_iter_no_change=2,
        input_noise=0.3,
        label_smoothing=0.1,
        head_l2=1e-2,
        label_scale=0.5,
        average_decay=0.95,
        validation_fraction=0.2,
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
        self.input_noise = input_noise
        self.label_smoothing = label_smoothing
        self.head_l2 = head_l2
        self.label_scale = label_scale
        self.average_decay = average_decay
        self.validation_fraction = validation_fraction
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
    @fit_context(prefer_skip_nested_validation=True)
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
        # A fit that fails (bad y after X was accepted, divergence) leaves the
        # estimator as it was: _validate_X has already reset n_features_in_.
        with self._restored_on_failure():
            return self._fit(X, y)

    def _fit(self, X, y):
        self._check_params()
        X = self._validate_X(X, reset=True)
        supervised = y is not None and self.supervision_weight > 0
        classes = None
        if supervised:
            classes, y_index = encode_class_labels(y, X.shape[0], classes=None)
            check_two_classes(classes, "fit")
            check_squares_fit_float32(X, supervised=True)
        n_components = self._resolved_n_components(X.shape[1])
        device = resolve_device(self.device)
        X_t = as_tensor(X, device=device)
        # Unsupervised fits measure the objective `checks` times per epoch:
        # the rule's tol, relative improvement per epoch, is shared among them.
        checks = 1 if supervised else OnlineDictionaryLearning.checks_per_epoch(
            X.shape[0], self._batch_rows(X.shape[0], supervised=False))
        policy = self._training_policy(
            self.max_iter * checks, None if self.tol is None else self.tol / checks,
            checks=checks)
        scales = optimizer_state = head = None
        with seeded(self.random_state, device):
            if supervised:
                y_t = torch.as_tensor(y_index, dtype=torch.long, device=device)
                learner, head, scales, optimizer_state = fit_task_driven(
                    X_t, y_t, len(classes), n_components, policy,
                    learner_settings=self._learner_settings(),
                    supervision=self._supervision(),
                    learning_rate=self.learning_rate, max_iter=self.max_iter,
                    batch_size=self._batch_rows(X.shape[0], supervised=True),
                    chunk_rows=self._coding_rows(),
                )
            else:
                learner = OnlineDictionaryLearning.initial(
                    X_t, n_components, **self._learner_settings())
                n_epochs = run_online(
                    learner, X_t, policy, n_epochs=self.max_iter, checks=checks,
                    whole_data=True,
                    batch_size=self._batch_rows(X.shape[0], supervised=False))
        self._set_fitted(FittedDictionary.after_training(
            None, learner, policy, X.dtype, head=head, classes=classes,
            scales=scales, optimizer_state=optimizer_state,
            n_epochs=None if supervised else n_epochs))
        if self.tol is not None and not (policy.converged or policy.interrupted):
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
        at the current ``learning_rate``. Their input noise's scale is
        measured on the first supervised chunk of two rows or more and kept:
        make that chunk representative, as for the initial dictionary.

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
        # The fitted arrays are copied into the learner, never trained in
        # place, so restoring the attributes restores the whole model.
        with self._restored_on_failure():
            return self._partial_fit(X, y, classes)

    def _partial_fit(self, X, y, classes):
        first_call = not hasattr(self, "components_")
        if first_call:
            validate_params_now(self)
            self._check_params()
        X = self._validate_X(X, reset=first_call)
        fitted = None if first_call else self._fitted()
        if not first_call:
            check_same_n_components(self.n_components, fitted.components,
                                    self._resolved_n_components(X.shape[1]))
        supervised = y is not None and self.supervision_weight > 0
        has_head = fitted is not None and fitted.classes is not None
        if supervised:
            if has_head and classes is not None:
                check_same_classes(classes, fitted.classes)
            known = fitted.classes if has_head else classes
            head_classes, y_index = encode_class_labels(y, X.shape[0], classes=known)
            if not has_head:
                check_two_classes(head_classes, "the first supervised partial_fit")
            check_squares_fit_float32(X, supervised=True)
        device = resolve_device(self.device) if first_call else \
            self._inference_device()
        X_t = as_tensor(X, device=device)
        # One epoch, no stopping rule; a progress bar only in fit. Divergence
        # is judged against the largest epoch loss so far, so a run of calls
        # cannot creep up unnoticed.
        policy = self._training_policy(1, None, bar=False)
        if fitted is not None and fitted.loss_curve:
            policy.reference_loss = max(fitted.loss_curve)
        offset = 0 if first_call else fitted.n_iter
        with seeded(self.random_state, device, offset=offset):
            if first_call:
                learner = OnlineDictionaryLearning.initial(
                    X_t, self._resolved_n_components(X.shape[1]),
                    **self._learner_settings())
            else:
                learner = fitted.learner(self._learner_settings(), device)
            codes = X_t.new_zeros((X.shape[0], learner.dictionary.shape[0]))
            if not supervised:
                run_online(learner, X_t, policy, n_epochs=1, codes=codes,
                           batch_size=self._batch_rows(X.shape[0], supervised=False))
                self._set_fitted(FittedDictionary.after_training(
                    fitted, learner, policy, X.dtype, n_epochs=1))
                return self
            phase = task_phase(fitted, learner, len(head_classes),
                               supervision=self._supervision(),
                               learning_rate=self.learning_rate, device=device)
            y_t = torch.as_tensor(y_index, dtype=torch.long, device=device)
            with policy.session(1) as session:
                phase.run(X_t, y_t, codes, session, n_epochs=1,
                          batch_size=self._batch_rows(X.shape[0], supervised=True))
        self._set_fitted(FittedDictionary.after_training(
            fitted, learner, policy, X.dtype, head=phase.head,
            classes=None if has_head else head_classes, scales=phase.scales,
            optimizer_state=phase.optimizer_state()))
        return self

    def _restore_state(self, state):
        if "components_" in state:
            missing = sorted(
                attribute for name, attribute in FittedDictionary.ATTRIBUTES.items()
                if name not in FittedDictionary.SUPERVISED_ONLY
                and attribute not in state)
            if missing:
                raise KeyError(f"its fitted state lacks {missing}")
        super()._restore_state(state)

    def _fitted(self):
        """The fitted attributes as a ``FittedDictionary``."""
        return FittedDictionary(**{
            name: getattr(self, attribute, None)
            for name, attribute in FittedDictionary.ATTRIBUTES.items()})

    def _set_fitted(self, fitted):
        """Write ``fitted`` to the attributes; the supervised-only ones are
        removed when there is no head."""
        for name, attribute in FittedDictionary.ATTRIBUTES.items():
            value = getattr(fitted, name)
            if value is None and name in FittedDictionary.SUPERVISED_ONLY:
                self.__dict__.pop(attribute, None)
            else:
                setattr(self, attribute, value)

    # ------------------------------------------------------------- helpers
    def _check_params(self):
        """Checks that ``_parameter_constraints`` cannot express."""
        if self.positive_code and self.transform_algorithm == "omp":
            raise ValueError(
                "positive_code=True is not available with transform_algorithm='omp' "
                "(OMP codes can be negative); use transform_algorithm='lasso_fista' "
                "or 'threshold', or positive_code=False."
            )

    def _check_params_after_fit(self):
        """Inference and partial_fit check every parameter again (set_params
        may have changed them since fit), the combinations included."""
        super()._check_params_after_fit()
        self._check_params()

    def _validate_X(self, X, *, reset):
        """The base's validation, then a check that X's squares fit float32."""
        X = super()._validate_X(X, reset=reset)
        check_squares_fit_float32(X)
        return X

    def _resolved_n_components(self, n_features):
        return n_features if self.n_components is None else int(self.n_components)

    def _batch_rows(self, n_samples, *, supervised):
        return auto_batch_rows(self.batch_size, n_samples, supervised=supervised)

    def _learner_settings(self):
        return dict(alpha=self.alpha, forget_exponent=self.forget_exponent,
                    positive_code=self.positive_code, positive_dict=self.positive_dict)

    def _supervision(self):
        return Supervision(
            weight=self.supervision_weight, input_noise=self.input_noise,
            label_smoothing=self.label_smoothing, head_l2=self.head_l2,
            label_scale=self.label_scale, averaging=self.average_decay,
            validation_fraction=self.validation_fraction)

    def _training_policy(self, max_iter, tol, *, bar=True, checks=1):
        """Stopping rule, progress and divergence (``checks`` per epoch)."""
        return TrainingPolicy(
            owner="DictionaryLearner", max_iter=max_iter, tol=tol,
            n_iter_no_change=self.n_iter_no_change, checks_per_epoch=checks,
            verbose=self.verbose if bar or self.verbose >= 2 else 0,
            divergence_hint=(
                f"lower learning_rate (now {self.learning_rate}) or "
                f"supervision_weight (now {self.supervision_weight})"
            ),
        )

    # ------------------------------------------------------------ inference
    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def _coding_rows(self):
        """Rows coded at once by ``transform`` and ``score``."""
        return max(self._batch_rows(0, supervised=False), _CODING_CHUNK_ROWS)

    def _coder(self, algorithm, alpha, device):
        """A function mapping a float32 batch to its codes, for ``_batched``."""
        n_nonzero = self.transform_n_nonzero_coefs
        if n_nonzero is None:
            n_nonzero = min(max(self.n_features_in_ // 10, 1), self._n_features_out)
        return make_coder(
            as_tensor(self.components_, device=device), algorithm, alpha=alpha,
            n_nonzero_coefs=n_nonzero, max_iter=self.transform_max_iter,
            tol=self.transform_tol, positive=self.positive_code,
        )

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
        alpha = self.alpha if self.transform_alpha is None else self.transform_alpha
        coder = self._coder(self.transform_algorithm, alpha, device)
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
        X_original : ndarray of shape (n_samples, ``n_features_in_``)
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
        code = self._coder("lasso_fista", self.alpha, device)

        def objective(batch):
            return lasso_objective(batch, D, code(batch), self.alpha)[:, None]

        values = self._batched(objective, X, 1, device, batch_size=self._coding_rows())
        return -float(np.mean(values, dtype=np.float64))
