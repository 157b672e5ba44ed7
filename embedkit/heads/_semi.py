"""Semi-supervised heads: learn from the unlabelled rows a store already holds.

Both take ``y`` with ``-1`` for an unlabelled row (scikit-learn's ``semi_supervised``
convention) and end in an ordinary supervised head, ``head_`` (logreg by default),
fitted on the labelled rows plus the labels they gave the unlabelled ones. ``predict``
and ``predict_proba`` are that head's, so a new row needs no graph, and ``embedkit
deploy`` converts ``head_``.

- ``spread`` (:class:`LabelSpreadingHead`): label spreading (Zhou et al. 2004) on a
  sparse kNN graph of the rows, weighted ``cos ** 3`` (Iscen et al., CVPR 2019), solved
  by conjugate gradients; at most ``max_unlabelled`` unlabelled rows (a random sample)
  join the graph, which keeps a fit on 100,000 rows to seconds.
- ``selftrain`` (:class:`SelfTrainingHead`): self-training: fit, add the unlabelled
  rows predicted with probability >= ``threshold``, refit, until none is added.

    embedkit train feats.h5 --head spread --out head/    # the unlabelled train rows join in

Examples
--------
>>> from sklearn.datasets import make_blobs
>>> X, y = make_blobs(300, 5, centers=3, random_state=0)
>>> y_few = np.full(300, -1); y_few[:6] = y[:6]
>>> head = LabelSpreadingHead(random_state=0).fit(X, y_few)
>>> bool(head.score(X, y) > 0.9), type(head.head_).__name__
(True, 'LogRegHead')
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import diags, identity
from scipy.sparse.linalg import cg
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import validate_data

from embedkit.heads._params import ITERATIONS, OPEN_FRACTION, SEED, Interval, Options, check_params
from embedkit.heads._validation import check_fitted, encode_labels
from embedkit.heads.graph import knn_graph, unit_rows

BASES = ("logreg", "sgd", "ridge", "svm", "knn", "centroid")  # supervised scikit-learn heads
UNLABELLED = -1
_DTYPES = [np.float64, np.float32]


def labelled_mask(y: np.ndarray) -> np.ndarray:
    """Rows with a label: ``y != -1`` for numeric labels; every row for string labels."""
    y = np.asarray(y)
    if y.dtype.kind in "iuf":
        return y != UNLABELLED
    return np.array([v is not None and v != "" for v in y.tolist()], dtype=bool)


class _SemiHead(ClassifierMixin, BaseEstimator):
    """Shared: predict with ``head_``, the supervised head fitted last."""

    semi_supervised = True  # train/bench pass the unlabelled train rows with label -1
    spatial_input = False

    def _start(self, X, y):
        check_params(self)
        X, y = validate_data(self, X, y, dtype=_DTYPES)
        labelled = labelled_mask(y)
        self.classes_, y_index = encode_labels(y[labelled])
        return X, y, labelled, y_index

    def _base(self):
        from embedkit.heads.registry import make_head

        return make_head(self.base, random_state=self.random_state)

    def predict_proba(self, X):
        """Class probabilities (N, K) of ``head_``, in the order of ``classes_``."""
        check_fitted(self, "head_")
        X = validate_data(self, X, reset=False, dtype=_DTYPES)
        return self.head_.predict_proba(X)

    def predict(self, X):
        """The most probable class of each row."""
        check_fitted(self, "head_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class LabelSpreadingHead(_SemiHead):
    """Label spreading over a kNN graph, then ``base`` fitted on the spread labels.

    Parameters
    ----------
    base : str
        The supervised head fitted last (one of :data:`BASES`); deploy converts it.
    n_neighbors : int
        Neighbours per row in the graph.
    alpha : float
        How far labels spread (0: not at all; near 1: far).
    max_unlabelled : int
        At most this many unlabelled rows (a random sample) join the graph.
    max_iter : int
        Conjugate-gradient iterations per class.
    random_state : int or None
        Seed of the sample of unlabelled rows and of ``base``.
    """

    _constraints = {
        "base": [Options(BASES)],
        "n_neighbors": [Interval(int, 1, 1000)],
        "alpha": [OPEN_FRACTION],
        "max_unlabelled": [Interval(int, 0, 10**8)],
        "max_iter": [ITERATIONS],
        "random_state": SEED,
    }

    def __init__(
        self,
        base: str = "logreg",
        *,
        n_neighbors: int = 10,
        alpha: float = 0.9,
        max_unlabelled: int = 20_000,
        max_iter: int = 20,
        random_state: int | None = None,
    ):
        self.base = base
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.max_unlabelled = max_unlabelled
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y):
        """Spread the labels of ``y`` (-1: unlabelled) over ``X`` (N, D), then fit ``head_``."""
        X, y, labelled, y_index = self._start(X, y)
        unl = np.flatnonzero(~labelled)
        rng = np.random.default_rng(self.random_state)
        if len(unl) > self.max_unlabelled:
            unl = np.sort(rng.choice(unl, self.max_unlabelled, replace=False))
        rows = np.concatenate([np.flatnonzero(labelled), unl])
        proba = self.spread(unit_rows(X[rows], center=True), y_index, len(self.classes_))  # (M, K)
        spread = proba.argmax(1)
        spread[: len(y_index)] = y_index  # the given labels stay
        self.n_spread_ = int(len(unl))
        self.head_ = self._base().fit(X[rows], self.classes_[spread])
        return self

    def spread(self, X: np.ndarray, y_index: np.ndarray, k: int) -> np.ndarray:
        """Row-normalised label scores (M, K) of unit rows ``X``; the first rows are labelled."""
        m, n_lab = len(X), len(y_index)
        Y = np.zeros((m, k))
        Y[np.arange(n_lab), y_index] = 1.0
        self.n_iter_ = 1  # conjugate-gradient iterations of the slowest class
        if m == n_lab or m < 3:
            return Y
        W = knn_graph(X, self.n_neighbors)
        d = np.asarray(W.sum(1)).ravel()
        inv = diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
        A = identity(m, format="csr") - self.alpha * (inv @ W @ inv)  # (M, M), s.p.d.
        steps = [0]

        def count(_):
            steps[0] += 1

        F = np.column_stack(
            [cg(A, Y[:, c], maxiter=self.max_iter, callback=count)[0] for c in range(k)]
        )
        self.n_iter_ = max(1, -(-steps[0] // k))
        F = np.maximum(F, 0)
        total = F.sum(1, keepdims=True)
        return np.where(total > 0, F / np.maximum(total, 1e-12), 1.0 / k)


class SelfTrainingHead(_SemiHead):
    """Self-training around ``base``: adopt confident predictions of unlabelled rows, refit.

    Parameters
    ----------
    base : str
        The supervised head (one of :data:`BASES`); deploy converts its last fit.
    threshold : float
        Probability at or above which a prediction becomes a label.
    max_iter : int
        Rounds of adoption at most (``n_iter_`` counts the fits, one more than the rounds).
    random_state : int or None
        Seed of ``base``.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, y = make_blobs(200, 4, centers=2, random_state=1)
    >>> y_few = np.where(np.arange(200) < 10, y, -1)
    >>> head = SelfTrainingHead(random_state=0).fit(X, y_few)
    >>> head.n_adopted_ > 0
    True
    """

    _constraints = {
        "base": [Options(BASES)],
        "threshold": [OPEN_FRACTION],
        "max_iter": [Interval(int, 1, 1000)],
        "random_state": SEED,
    }

    def __init__(
        self,
        base: str = "logreg",
        *,
        threshold: float = 0.9,
        max_iter: int = 10,
        random_state: int | None = None,
    ):
        self.base = base
        self.threshold = threshold
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y):
        """Fit on the labelled rows of ``y`` (-1: unlabelled), adopting confident predictions."""
        X, y, labelled, y_index = self._start(X, y)
        rows, target = np.flatnonzero(labelled), self.classes_[y_index]
        left = np.flatnonzero(~labelled)
        head = self._base().fit(X[rows], target)
        self.n_iter_ = 1  # fits of the base head
        for _ in range(self.max_iter):
            if not len(left):
                break
            proba = head.predict_proba(X[left])  # (U, K)
            sure = proba.max(1) >= self.threshold
            if not sure.any():
                break
            rows = np.concatenate([rows, left[sure]])
            target = np.concatenate([target, head.classes_[proba[sure].argmax(1)]])
            left = left[~sure]
            head = self._base().fit(X[rows], target)
            self.n_iter_ += 1
        self.n_adopted_ = int(len(rows) - labelled.sum())
        self.head_ = head
        return self
