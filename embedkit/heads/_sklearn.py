"""scikit-learn heads: SGD, logistic regression, ridge, linear SVM, cosine kNN, nearest centroid.

Each head is a thin estimator that stores its parameters, builds the underlying
scikit-learn model in ``fit`` (``estimator_``) and always offers ``predict_proba``
(native where the model has it, else a temperature-calibrated softmax of
``decision_function``). None of them imports torch.

    embedkit train feats.h5 --head sgd --param loss=hinge --out head/
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import validate_data

from embedkit.errors import UserInputError
from embedkit.heads._base import (
    check_fitted,
    encode_labels,
    fit_temperature,
    softmax,
    two_columns,
)

SGD_LOSSES = ("log_loss", "hinge", "modified_huber")


class _WrappedHead(ClassifierMixin, BaseEstimator):
    """Common fit/predict for heads that delegate to one scikit-learn estimator."""

    _native_proba = False  # True when estimator_.predict_proba is calibrated already

    def _make_estimator(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def fit(self, X, y):
        """Fit the head on features ``X`` (N, D) and labels ``y`` (N,)."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        self.classes_, y_index = encode_labels(y)
        self.estimator_ = self._make_estimator().fit(X, y_index)
        self._fit_temperature(X, y_index)
        return self

    def _fit_temperature(self, X, y_index):
        if getattr(self.estimator_, "n_iter_", None) is not None:
            self.n_iter_ = int(np.max(self.estimator_.n_iter_))
        if not self._native_proba:
            self.temperature_ = fit_temperature(self.estimator_.decision_function(X), y_index)

    def _transform(self, X):
        check_fitted(self)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def decision_function(self, X):
        """Class scores (N, K), or (N,) for two classes, as the underlying model gives them."""
        X = self._transform(X)
        return self.estimator_.decision_function(X)

    def predict_proba(self, X):
        """Class probabilities (N, K) in the order of ``classes_``."""
        X = self._transform(X)
        if self._native_proba:
            return self.estimator_.predict_proba(X)
        return softmax(two_columns(self.estimator_.decision_function(X)) / self.temperature_)

    def predict(self, X):
        """Predicted labels (N,), taken from ``classes_``."""
        index = np.argmax(self.predict_proba(X), axis=1)
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
        without improvement (without it SGD runs ~15 min on 50k x 768).
    random_state : int or None
        Seed of the shuffling and the validation split.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> SGDHead(random_state=0).fit(X, y).score(X, y) > 0.8
    True
    """

    def __init__(
        self,
        loss: str = "log_loss",
        *,
        alpha: float = 1e-3,
        max_iter: int = 50,
        tol: float = 1e-3,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 3,
        class_weight: str | dict | None = None,
        n_jobs: int | None = None,
        random_state: int | None = None,
    ):
        self.loss = loss
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y):
        """Fit by SGD; early stopping is used when its hold-out has 10 rows per class."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        self.classes_, y_index = encode_labels(y)
        enough = len(X) * self.validation_fraction >= 10 * len(self.classes_)
        self.estimator_ = self._make_estimator(self.early_stopping and enough)
        self.estimator_.fit(X, y_index)
        self._fit_temperature(X, y_index)
        return self

    def _make_estimator(self, early_stopping: bool | None = None):
        from sklearn.linear_model import SGDClassifier

        if self.loss not in SGD_LOSSES:
            raise UserInputError(f"unknown SGD loss {self.loss!r}; use one of: {SGD_LOSSES}")
        return SGDClassifier(
            loss=self.loss,
            alpha=self.alpha,
            max_iter=self.max_iter,
            tol=self.tol,
            early_stopping=self.early_stopping if early_stopping is None else early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            class_weight=self.class_weight,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )

    @property
    def _native_proba(self):
        return self.loss == "log_loss"

    def partial_fit(self, X, y, classes=None):
        """One pass of SGD over a block ``X``, ``y``; stream a large store block by block.

        ``classes`` (all labels) is required on the first call. The feature dimension
        must stay the same on every call. Use :func:`embedkit.heads.fit_store` to stream
        from a :class:`~embedkit.store.FeatureStore`.
        """
        first = not hasattr(self, "estimator_")
        if first and classes is None:
            raise UserInputError(
                "classes must be passed on the first call to partial_fit, "
                "e.g. partial_fit(X, y, classes=np.unique(y_all))"
            )
        if not first and X is not None and np.shape(X)[-1] != self.n_features_in_:
            raise UserInputError(
                f"X has {np.shape(X)[-1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input; pass blocks from the same tap"
            )
        X, y = validate_data(self, X, y, reset=first, dtype=[np.float64, np.float32])
        if first:
            self.classes_ = np.unique(np.asarray(classes))
            self.estimator_ = self._make_estimator(early_stopping=False)
        _, y_index = encode_labels(y, self.classes_)
        self.estimator_.partial_fit(X, y_index, classes=np.arange(len(self.classes_)))
        if not self._native_proba:
            # The block at hand calibrates the temperature; cheap, and tracks training.
            self.temperature_ = fit_temperature(self.estimator_.decision_function(X), y_index)
        return self


class LogRegHead(_WrappedHead):
    """Multinomial logistic regression (lbfgs), the reference linear probe.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> LogRegHead().fit(X, y).predict_proba(X[:2]).shape
    (2, 2)
    """

    _native_proba = True

    def __init__(
        self,
        C: float = 1.0,
        *,
        max_iter: int = 1000,
        tol: float = 1e-4,
        class_weight: str | dict | None = None,
        random_state: int | None = None,
    ):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight
        self.random_state = random_state

    def _make_estimator(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(
            C=self.C,
            max_iter=self.max_iter,
            tol=self.tol,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )


class RidgeHead(_WrappedHead):
    """Ridge classifier (one closed-form solve); probabilities by a calibrated softmax.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> RidgeHead(alpha=1.0).fit(X, y).score(X, y) > 0.8
    True
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        class_weight: str | dict | None = None,
        random_state: int | None = None,
    ):
        self.alpha = alpha
        self.class_weight = class_weight
        self.random_state = random_state  # unused: the solve is deterministic

    def _make_estimator(self):
        from sklearn.linear_model import RidgeClassifier

        return RidgeClassifier(alpha=self.alpha, class_weight=self.class_weight)


class SVMHead(_WrappedHead):
    """Linear SVM (liblinear); probabilities by a calibrated softmax.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> SVMHead(random_state=0).fit(X, y).score(X, y) > 0.8
    True
    """

    def __init__(
        self,
        C: float = 1.0,
        *,
        max_iter: int = 2000,
        tol: float = 1e-4,
        class_weight: str | dict | None = None,
        random_state: int | None = None,
    ):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight
        self.random_state = random_state

    def _make_estimator(self):
        from sklearn.svm import LinearSVC

        return LinearSVC(
            C=self.C,
            max_iter=self.max_iter,
            tol=self.tol,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )


class KNNHead(_WrappedHead):
    """k-nearest neighbours on cosine distance; ``n_neighbors`` is capped at the data size.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(200, 8, random_state=0)
    >>> KNNHead(n_neighbors=5).fit(X, y).predict(X[:3]).shape
    (3,)
    """

    _native_proba = True

    def __init__(
        self,
        n_neighbors: int = 10,
        *,
        weights: str = "distance",
        metric: str = "cosine",
        n_jobs: int | None = None,
        random_state: int | None = None,
    ):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.metric = metric
        self.n_jobs = n_jobs
        self.random_state = random_state  # unused: kNN has no randomness

    def fit(self, X, y):
        """Remember the training features ``X`` (N, D) and labels ``y`` (N,)."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        self.classes_, y_index = encode_labels(y)
        from sklearn.neighbors import KNeighborsClassifier

        self.estimator_ = KNeighborsClassifier(
            n_neighbors=min(self.n_neighbors, len(X)),
            weights=self.weights,
            metric=self.metric,
            algorithm="brute",
            n_jobs=self.n_jobs,
        ).fit(X, y_index)
        return self

    def decision_function(self, X):
        """Neighbour votes per class (N, K); for two classes the vote difference (N,)."""
        return _binary_as_1d(self.predict_proba(X))


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

    def __init__(self, metric: str = "cosine", *, random_state: int | None = None):
        self.metric = metric
        self.random_state = random_state  # unused: prototypes are means

    def fit(self, X, y):
        """Compute one prototype per class from ``X`` (N, D) and ``y`` (N,)."""
        if self.metric not in ("cosine", "euclidean"):
            raise UserInputError(
                f"unknown centroid metric {self.metric!r}; use one of: cosine, euclidean"
            )
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        self.classes_, y_index = encode_labels(y)
        X = self._prepare(X)
        centroids = np.zeros((len(self.classes_), X.shape[1]), dtype=np.float64)
        np.add.at(centroids, y_index, X)
        centroids /= np.bincount(y_index, minlength=len(self.classes_))[:, None]
        self.centroids_ = self._prepare(centroids)
        self.temperature_ = fit_temperature(self._scores(X), y_index)
        return self

    def _prepare(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.metric == "cosine":
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        return X

    def _scores(self, X):  # (N, K): cosine similarity, or minus the squared distance
        if self.metric == "cosine":
            return X @ self.centroids_.T
        sq = (X**2).sum(1)[:, None] - 2 * X @ self.centroids_.T + (self.centroids_**2).sum(1)
        return -sq

    def decision_function(self, X):
        """Similarity to each class prototype (N, K); for two classes the difference (N,)."""
        return _binary_as_1d(self._similarity(X))

    def _similarity(self, X):
        return self._scores(self._prepare(self._transform(X)))

    def predict_proba(self, X):
        """Calibrated softmax over prototype similarities (N, K)."""
        return softmax(self._similarity(X) / self.temperature_)


def _binary_as_1d(scores: np.ndarray) -> np.ndarray:
    return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores
