"""scikit-learn heads: SGD, logistic regression, ridge, linear SVM, cosine kNN, nearest centroid.

Each head is a thin estimator that stores its parameters, builds the underlying
scikit-learn model in ``fit`` (``estimator_``) and always offers ``predict_proba``
(native where the model has it, else a temperature-calibrated softmax of
``decision_function``). None of them imports torch. (Saved ``head.skops`` files name
this module, so it keeps its name.)

    embedkit train feats.h5 --head sgd --param loss=hinge --out head/
"""

from __future__ import annotations

import importlib

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import validate_data

from embedkit.heads._params import (
    CLASS_WEIGHT,
    ITERATIONS,
    N_JOBS,
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    SEED,
    Declared,
    Interval,
    Options,
    check_params,
)
from embedkit.heads._validation import check_fitted, check_partial_fit, encode_labels

SGD_LOSSES = ("log_loss", "hinge", "modified_huber")
_DTYPES = [np.float64, np.float32]
# LogRegCVHead's C grid: 0.01 to 1000 in half-decade steps (11 values)
HALF_DECADES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


class _WrappedHead(Declared, ClassifierMixin, BaseEstimator):
    """Common fit/predict for heads that delegate to one scikit-learn estimator."""

    _model = ""  # "module.Class" of the scikit-learn estimator; it takes the head's params
    _unused = ()  # head parameters the estimator does not take
    _native_proba = False  # True when estimator_.predict_proba is calibrated already
    spatial_input = False  # takes (N, D) features: from_store flattens feature maps

    def fit(self, X, y):
        """Fit the head on features ``X`` (N, D) and labels ``y`` (N,)."""
        check_params(self)
        X, y = validate_data(self, X, y, dtype=_DTYPES)
        self.classes_, y_index = encode_labels(y)
        self._fit(X, y_index)
        return self

    def _fit(self, X, y_index) -> None:
        self.estimator_ = self._make_estimator(**self._fit_settings(len(X))).fit(X, y_index)
        if getattr(self.estimator_, "n_iter_", None) is not None:
            self.n_iter_ = int(np.max(self.estimator_.n_iter_))
        self._calibrate(X, y_index)

    def _fit_settings(self, n_rows: int) -> dict:
        """Estimator parameters that depend on the data; none by default."""
        return {}

    def _make_estimator(self, **settings):
        module, name = self._model.rsplit(".", 1)
        params = {k: v for k, v in self.get_params().items() if k not in self._unused}
        return getattr(importlib.import_module(module), name)(**(params | settings))

    def _calibrate(self, X, y_index) -> None:
        if not self._native_proba:
            self.temperature_ = fit_temperature(self.estimator_.decision_function(X), y_index)

    def _transform(self, X):
        check_fitted(self)
        return validate_data(self, X, reset=False, dtype=_DTYPES)

    def decision_function(self, X):
        """Class scores (N, K), or (N,) for two classes, as the underlying model gives them."""
        X = self._transform(X)  # raises NotFittedError before estimator_ is looked up
        return self.estimator_.decision_function(X)

    def predict_proba(self, X):
        """Class probabilities (N, K) in the order of ``classes_``."""
        X = self._transform(X)
        if self._native_proba:
            return self.estimator_.predict_proba(X)
        return softmax(two_columns(self.estimator_.decision_function(X)) / self.temperature_, 1)

    def predict(self, X):
        """Predicted labels (N,), taken from ``classes_``."""
        index = np.argmax(self.predict_proba(X), axis=1)  # checks the head is fitted first
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class SGDHead(_WrappedHead):
    """Linear head trained by SGD, with early stopping and streaming ``partial_fit``.

    Parameters
    ----------
    loss : {"log_loss", "hinge", "modified_huber"}
        ``log_loss`` gives native probabilities; the others a calibrated softmax.
    alpha : float
        L2 regularisation strength; 1e-3 beat scikit-learn's 1e-4 by 6 points (log loss)
        on the 50,000 x 768 benchmark of ``benchmarks/bench_heads.py``.
    max_iter : int
        Epochs at most; early stopping usually ends training in under ten.
    early_stopping : bool
        Hold out ``validation_fraction`` and stop after ``n_iter_no_change`` epochs
        without improvement (without it SGD runs ~15 min on 50k x 768); used when the
        hold-out has 10 rows per class.
    random_state : int or None
        Seed of the shuffling and the validation split.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> SGDHead(random_state=0).fit(X, y).score(X, y) > 0.8
    True
    """

    _model = "sklearn.linear_model.SGDClassifier"
    _params = {
        "loss": ("log_loss", [Options(SGD_LOSSES)]),
        "alpha": (1e-3, [POSITIVE]),
        "max_iter": (50, [ITERATIONS]),
        "tol": (1e-3, [NON_NEGATIVE, None]),
        "early_stopping": (True, [bool]),
        "validation_fraction": (0.1, [OPEN_FRACTION]),
        "n_iter_no_change": (3, [Interval(int, 1, 10**4)]),
        "class_weight": (None, CLASS_WEIGHT),
        "n_jobs": (None, N_JOBS),
        "random_state": (None, SEED),
    }

    def _fit_settings(self, n_rows: int) -> dict:
        enough = n_rows * self.validation_fraction >= 10 * len(self.classes_)
        return {"early_stopping": bool(self.early_stopping and enough)}

    @property
    def _native_proba(self):
        return self.loss == "log_loss"

    def partial_fit(self, X, y, classes=None):
        """One pass of SGD over a block ``X``, ``y``; stream a large store block by block.

        ``classes`` (all labels) is required on the first call. The feature dimension
        must stay the same on every call. Use :func:`embedkit.heads.fit_store` to stream
        from a :class:`~embedkit.store.FeatureStore`. The block at hand calibrates the
        temperature of the softmax (cheap, and it tracks training).
        """
        fitted = (self.n_features_in_,) if hasattr(self, "estimator_") else None
        first = check_partial_fit(self, X, classes, fitted)
        X, y = validate_data(self, X, y, reset=first, dtype=_DTYPES)
        if first:
            check_params(self)
            self.classes_ = np.unique(np.asarray(classes))
            self.estimator_ = self._make_estimator(early_stopping=False)
        _, y_index = encode_labels(y, self.classes_)
        self.estimator_.partial_fit(X, y_index, classes=np.arange(len(self.classes_)))
        self._calibrate(X, y_index)
        return self


# The parameters of LogRegHead, LogRegCVHead and SVMHead: C is the inverse penalty.
PENALISED = {
    "C": (1.0, [POSITIVE]),
    "max_iter": (2000, [ITERATIONS]),
    "tol": (1e-4, [NON_NEGATIVE]),
    "class_weight": (None, CLASS_WEIGHT),
    "random_state": (None, SEED),
}


class LogRegHead(_WrappedHead):
    """Multinomial logistic regression (lbfgs), the reference linear probe.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> LogRegHead().fit(X, y).predict_proba(X[:2]).shape
    (2, 2)
    """

    _model = "sklearn.linear_model.LogisticRegression"
    _native_proba = True
    _params = PENALISED


class LogRegCVHead(_WrappedHead):
    """Logistic regression whose ``C`` is chosen by cross-validation of its training rows.

    No one ``C`` suits every feature scale: L2-normed sentence embeddings want a weak
    penalty, raw convnet features a stronger one. ``fit`` scores ``Cs`` (accuracy) on
    ``cv`` stratified folds of the rows it is given, nested inside any outer
    cross-validation the bench runs, then refits on all of them; ``C_`` is the one
    chosen. With fewer than two rows in some class there are no folds: ``C`` is used.

    ``Cs`` steps by half a decade (1, 3, 10, ...): on fortunes through mpnet the
    cross-validated accuracy peaks between 1 and 10 (C=3), and a grid of whole decades
    could only offer 1 (too strong a penalty) or 10 (issue 23).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> LogRegCVHead().fit(X, y).C_ in LogRegCVHead().Cs
    True
    """

    _model = "sklearn.linear_model.LogisticRegressionCV"
    _native_proba = True
    _unused = ("C", "cv")
    _params = PENALISED | {
        "Cs": (HALF_DECADES, [tuple]),
        "cv": (5, [Interval(int, 2, 100)]),
    }

    def _fit(self, X, y_index) -> None:  # choose C on folds of the rows, then fit on all
        self.n_folds_ = int(min(self.cv, np.bincount(y_index).min()))
        super()._fit(X, y_index)
        self.C_ = float(np.ravel(getattr(self.estimator_, "C_", self.C))[0])

    def _make_estimator(self, **settings):
        if self.n_folds_ < 2:  # a class with one row: nothing to cross-validate on
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(
                **{k: v for k, v in self.get_params().items() if k not in ("Cs", "cv")}
            )
        return super()._make_estimator(
            Cs=list(self.Cs), cv=self.n_folds_, scoring="accuracy", l1_ratios=(0.0,),
            use_legacy_attributes=False, **settings,
        )  # fmt: skip


class SVMHead(_WrappedHead):
    """Linear SVM (liblinear); probabilities by a calibrated softmax.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> SVMHead(random_state=0).fit(X, y).score(X, y) > 0.8
    True
    """

    _model = "sklearn.svm.LinearSVC"
    _params = PENALISED


class RidgeHead(_WrappedHead):
    """Ridge classifier (one closed-form solve); probabilities by a calibrated softmax.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> RidgeHead(alpha=1.0).fit(X, y).score(X, y) > 0.8
    True
    """

    _model = "sklearn.linear_model.RidgeClassifier"
    _params = {
        "alpha": (1.0, [NON_NEGATIVE]),
        "class_weight": (None, CLASS_WEIGHT),
        "random_state": (None, SEED),  # used only by the sag/saga solvers
    }


class KNNHead(_WrappedHead):
    """k-nearest neighbours on cosine distance; ``n_neighbors`` is capped at the data size.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> KNNHead(n_neighbors=5).fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _model = "sklearn.neighbors.KNeighborsClassifier"
    _unused = ("random_state",)
    _native_proba = True
    _params = {
        "n_neighbors": (10, [Interval(int, 1, 10**6)]),
        "weights": ("distance", [Options(("uniform", "distance"))]),
        "metric": ("cosine", [Options(("cosine", "euclidean", "manhattan", "chebyshev"))]),
        "n_jobs": (None, N_JOBS),
        "random_state": (None, SEED),  # unused: kNN has no randomness
    }

    def _fit_settings(self, n_rows: int) -> dict:
        return {"n_neighbors": min(self.n_neighbors, n_rows), "algorithm": "brute"}

    def decision_function(self, X):
        """Neighbour votes per class (N, K); for two classes the vote difference (N,)."""
        return binary_as_1d(self.predict_proba(X))


class CentroidHead(_WrappedHead):
    """Nearest centroid (prototype) head, the usual few-shot baseline.

    Parameters
    ----------
    metric : {"cosine", "euclidean"}
        ``cosine`` L2-normalises features and prototypes; ``euclidean`` uses raw means.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> CentroidHead().fit(X, y).centroids_.shape
    (2, 8)
    """

    _params = {
        "metric": ("cosine", [Options(("cosine", "euclidean"))]),
        "random_state": (None, SEED),  # unused: prototypes are means
    }

    def _fit(self, X, y_index) -> None:  # one prototype per class
        X = self._prepare(X)
        centroids = np.zeros((len(self.classes_), X.shape[1]), dtype=np.float64)
        np.add.at(centroids, y_index, X)
        centroids /= np.bincount(y_index, minlength=len(self.classes_))[:, None]
        self.centroids_ = self._prepare(centroids)
        self.temperature_ = fit_temperature(self._scores(X), y_index)

    def _prepare(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.metric == "cosine":
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return X

    def _scores(self, X):  # (N, K): cosine similarity, or minus the squared distance
        if self.metric == "cosine":
            return X @ self.centroids_.T
        return -((X**2).sum(1)[:, None] - 2 * X @ self.centroids_.T + (self.centroids_**2).sum(1))

    def decision_function(self, X):
        """Similarity to each class prototype (N, K); for two classes the difference (N,)."""
        return binary_as_1d(self._similarity(X))

    def _similarity(self, X):
        return self._scores(self._prepare(self._transform(X)))

    def predict_proba(self, X):
        """Calibrated softmax over prototype similarities (N, K)."""
        return softmax(self._similarity(X) / self.temperature_, 1)


def binary_as_1d(scores: np.ndarray) -> np.ndarray:
    """(N, K) class scores; for two classes the difference (N,), as scikit-learn expects."""
    return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores


def two_columns(scores: np.ndarray) -> np.ndarray:
    """Turn a binary decision function (N,) into (N, 2) scores for the softmax."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.stack([-scores / 2, scores / 2], axis=1) if scores.ndim == 1 else scores


def fit_temperature(scores: np.ndarray, y_index: np.ndarray) -> float:
    """Fit the softmax temperature ``T`` minimising the log loss of ``scores / T``.

    A one-dimensional search over ``log T`` in [1e-3, 1e3]; it takes milliseconds.
    """
    from scipy.optimize import minimize_scalar

    scores = two_columns(scores)
    rows = np.arange(len(y_index))

    def nll(log_t: float) -> float:
        p = softmax(scores / np.exp(log_t), 1)
        return float(-np.mean(np.log(p[rows, y_index] + 1e-12)))

    result = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return float(np.exp(result.x))
