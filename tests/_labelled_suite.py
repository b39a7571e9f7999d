"""The labelled data sets of the quality suite, and its classifier pipeline.

For ``tests/dictionary/test_task_driven.py``: the fixed splits of
``benchmarks/bench_quality.py`` (digits, textures, faces; training rows capped
at 2000 and test rows at 1000 by a fixed stratified subsample), loaded from
``sklearn_replearn.datasets._suite``, which the benchmark imports too, and the
pipeline of ``benchmarks/supervised_margin.py`` (codes of width 16, then
``StandardScaler`` and ``LogisticRegression``). The test's thresholds were
measured on these arrays.

The data ship with scikit-learn and scikit-image; nothing is downloaded.
"""

import warnings

from sklearn_replearn.datasets import _suite

DATASETS = _suite.LABELLED


def outer_split(name, max_train=2000, max_test=1000):
    """The fixed float32 ``(X_train, X_test, y_train, y_test)`` of ``name``."""
    return _suite.load(name, max_train, max_test)


def accuracy(data, seed, supervised):
    """Test accuracy of DictionaryLearner codes -> StandardScaler ->
    LogisticRegression, the dictionary fit with or without the labels."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_replearn import DictionaryLearner

    X_train, X_test, y_train, y_test = data
    params = {"n_components": 16, "random_state": seed, "device": "cpu"}
    if not supervised:
        params["supervision_weight"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DictionaryLearner(**params).fit(X_train, y_train)
        classifier = make_pipeline(StandardScaler(),
                                   LogisticRegression(max_iter=2000))
        classifier.fit(model.transform(X_train), y_train)
        return classifier.score(model.transform(X_test), y_test)
