"""Semi-supervised heads: learn from the unlabelled rows a store already holds.

Both take ``y`` with ``-1`` for an unlabelled row (scikit-learn's ``semi_supervised``
convention) and end in an ordinary supervised head, ``head_`` (logreg by default),
fitted on the labelled rows plus the labels they gave the unlabelled ones. ``predict``
and ``predict_proba`` are that head's, so a new row needs no graph, and ``embedkit
deploy`` converts ``head_``.

- ``spread`` (:class:`LabelSpreadingHead`): label spreading (Zhou et al. 2004) on a
  sparse kNN graph of the rows (at most ``max_unlabelled`` unlabelled ones), weighted
  ``cos ** 3`` (Iscen et al., CVPR 2019). ``graph``, ``alpha`` and ``balance`` ``auto``
  measure before they trust the graph: a 5-fold cross-validation on the labelled rows
  scores each graph (centred or PCA-whitened features), reach, and sharing of spread
  labels among classes, and ``base`` on the labelled rows alone. The graphs come from
  :func:`embedkit.heads.graph.feature_graph`, memoised: refits on one pool build them once.
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
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import validate_data

from embedkit.heads._params import ITERATIONS, OPEN_FRACTION, SEED, Interval, Options, check_params
from embedkit.heads._validation import check_fitted, encode_labels
from embedkit.heads.graph import feature_graph
from embedkit.heads.spreading import balance_scores, one_hot, spread_operator

BASES = ("logreg", "sgd", "ridge", "svm", "knn", "centroid")  # supervised scikit-learn heads
GRAPHS = ("auto", "centre", "whiten", "none")  # what LabelSpreadingHead spreads over
ALPHAS = (0.9, 0.99)  # alpha="auto": the reaches its cross-validation scores
BALANCES = ("auto", "none", "uniform", "labelled")  # how it shares spread labels among classes
UNLABELLED = -1
_FOLDS = 5  # graph="auto": cross-validation folds of the labelled rows
_FEW_LABELS_GRAPH = "centre"  # graph="auto" with under min_cv_labels labels in a class
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
    graph : str
        The features of the kNN graph: ``centre`` (centred, unit rows), ``whiten``
        (PCA-whitened to at most 128 dimensions, then unit rows), ``none`` (no spreading:
        ``base`` on the labelled rows alone) or ``auto`` (the best of the three in a
        5-fold cross-validation on the labelled rows; ties go to the earlier).
    balance : str
        How the spread labels are shared among classes: ``none`` (each row takes its
        highest score), ``uniform`` (scores rescaled by Sinkhorn iterations so that each
        class holds an equal share of the rows, as in PT-MAP, Hu et al. 2021),
        ``labelled`` (shares in proportion to the labelled rows' classes, plus one) or
        ``auto`` (the cross-validation of ``graph`` also chooses among the three).
    min_cv_labels : int
        ``graph="auto"`` cross-validates the graph only when every labelled class has at
        least this many labels; below, a fold holds a class's only labels, the scores are
        noise, and it spreads over ``centre`` (0, the default: always cross-validate).
    n_neighbors : int
        Neighbours per row in the graph.
    alpha : float or "auto"
        How far labels spread (0: not at all; near 1: far); ``auto`` (the default): the
        cross-validation of ``graph`` also scores 0.9 and 0.99 (:data:`ALPHAS`) and keeps
        the better (``alpha_``; ties go to 0.9). Over 3 seeds of typical picks at 7 labels
        per class, 0.99 beat 0.9 on fortunes/MiniLM (0.744 vs 0.717) and digits/Lite0
        (0.880 vs 0.870) and lost on Fashion-MNIST/Lite0 (0.800 vs 0.813); the choice
        by cross-validation scored 0.739, 0.880 and 0.805.
    max_unlabelled : int
        At most this many unlabelled rows (a random sample) join the graph.
    max_iter : int
        Conjugate-gradient iterations per class.
    random_state : int or None
        Seed of the sample of unlabelled rows and of ``base``.
    """

    _constraints = {
        "base": [Options(BASES)],
        "graph": [Options(GRAPHS)],
        "balance": [Options(BALANCES)],
        "min_cv_labels": [Interval(int, 0, 10**6)],
        "n_neighbors": [Interval(int, 1, 1000)],
        "alpha": [OPEN_FRACTION, Options(("auto",))],
        "max_unlabelled": [Interval(int, 0, 10**8)],
        "max_iter": [ITERATIONS],
        "random_state": SEED,
    }

    def __init__(
        self,
        base: str = "logreg",
        *,
        graph: str = "auto",
        balance: str = "auto",
        min_cv_labels: int = 0,
        n_neighbors: int = 10,
        alpha: float | str = "auto",
        max_unlabelled: int = 20_000,
        max_iter: int = 20,
        random_state: int | None = None,
    ):
        self.base = base
        self.graph = graph
        self.balance = balance
        self.min_cv_labels = min_cv_labels
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
        rows = np.concatenate([np.flatnonzero(labelled), unl])  # (M,) the labelled first
        k, n_lab = len(self.classes_), len(y_index)
        graphs = self._choices(y_index, k)
        alphas = ALPHAS if self.alpha == "auto" else (self.alpha,)
        balances = ("none", "uniform", "labelled") if self.balance == "auto" else (self.balance,)
        choices = [(g, a, b) for g in graphs if g != "none" for a in alphas for b in balances]
        choices += [("none", None, "none")] if "none" in graphs else []
        folds = rng.permutation(n_lab) % _FOLDS  # (L,) fold of each labelled row
        self.graph_scores_, solved = {}, {}
        for graph in graphs:
            if graph == "none":
                if len(choices) > 1:
                    self.graph_scores_[graph] = self._cv_alone(X[rows[:n_lab]], y_index, folds)
                continue
            W = self._graph(X, rows, graph)
            for alpha in alphas:
                solved[graph, alpha] = self._operator(W, alpha)
                if len(choices) > 1:
                    for b, score in self._cv_spread(solved[graph, alpha], y_index, k, folds,
                                                    len(rows), balances).items():  # fmt: skip
                        self.graph_scores_[self._name(graph, alpha, b)] = score
        best = max(choices, key=lambda c: self.graph_scores_.get(self._name(*c), 0.0))
        self.graph_, self.alpha_, self.balance_ = best
        if self.graph_ == "none":
            rows, spread = rows[:n_lab], y_index
        else:
            F = solved[self.graph_, self.alpha_](one_hot(y_index, k, len(rows)))  # (M, K)
            F = balance_scores(F, self.balance_, y_index)
            spread = F.argmax(1)
            spread[:n_lab] = y_index  # the given labels stay
        self.n_spread_ = int(len(rows) - n_lab)
        self.head_ = self._base().fit(X[rows], self.classes_[spread])
        return self

    def _choices(self, y_index: np.ndarray, k: int) -> tuple[str, ...]:
        """The graphs to score: ``auto``'s three, unless a class has too few labels to."""
        if self.graph != "auto":
            return (self.graph,)
        if np.bincount(y_index, minlength=k).min() < self.min_cv_labels:
            return (_FEW_LABELS_GRAPH,)
        return ("centre", "whiten", "none")

    def _graph(self, X: np.ndarray, rows: np.ndarray, graph: str):
        """The kNN graph (M, M) of ``X[rows]`` in the order of ``rows`` (None under 3 rows).

        Built (and memoised) on the rows in sorted order, so every fit on one pool shares
        one graph whichever rows are labelled, then permuted into the order of ``rows``.
        """
        if len(rows) < 3:
            return None
        order = np.argsort(rows, kind="stable")
        at = np.empty_like(order)
        at[order] = np.arange(len(rows))  # row i of rows is row at[i] of the sorted graph
        W = feature_graph(X[rows[order]], graph, n_neighbors=self.n_neighbors)
        return W[at][:, at]

    def _operator(self, W, alpha: float):
        """``solve(Y)``: label spreading of seed scores ``Y`` (M, K) over the graph ``W``."""
        self.n_iter_ = 1  # conjugate-gradient iterations of the slowest class
        solve = spread_operator(W, alpha, self.max_iter)

        def counted(Y: np.ndarray) -> np.ndarray:
            F, steps = solve(Y)
            self.n_iter_ = max(1, int(steps.max()))
            return F

        return counted

    def _name(self, graph: str, alpha: float | None, balance: str) -> str:
        """The key of ``graph_scores_``: ``centre``, ``centre+uniform``, ``whiten@0.99``, ...

        ``@alpha`` only where ``alpha="auto"`` scores several; ``none`` has neither.
        """
        at = f"@{alpha:g}" if self.alpha == "auto" and graph != "none" else ""
        return graph + at + ("" if balance == "none" else f"+{balance}")

    @staticmethod
    def _cv_spread(solve, y_index, k: int, folds, m: int, balances) -> dict[str, float]:
        """Accuracy on each fold of labelled rows when only the other folds' labels spread.

        One solve per fold serves every way of ``balances``: {balance: accuracy}.
        """
        right = dict.fromkeys(balances, 0)
        for f in range(_FOLDS):
            held = np.flatnonzero(folds == f)
            kept = np.flatnonzero(folds != f)
            Y = one_hot(y_index, k, m)  # (M, K)
            Y[held] = 0.0
            F = solve(Y)
            for b in balances:
                guess = balance_scores(F, b, y_index[kept])[held].argmax(1)
                right[b] += int((guess == y_index[held]).sum())
        return {b: r / len(y_index) for b, r in right.items()}

    def _cv_alone(self, X: np.ndarray, y_index: np.ndarray, folds: np.ndarray) -> float:
        """Accuracy on each fold of labelled rows of ``base`` fitted on the other folds."""
        right = 0
        for f in range(_FOLDS):
            held, kept = folds == f, folds != f
            if held.any() and len(np.unique(y_index[kept])) > 1:
                head = self._base().fit(X[kept], y_index[kept])
                right += int((head.predict(X[held]) == y_index[held]).sum())
        return right / len(y_index)


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
