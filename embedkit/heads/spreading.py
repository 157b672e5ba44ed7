"""Label spreading's arithmetic: the solve over a graph, class rebalancing, seed scores.

:class:`embedkit.heads._semi.LabelSpreadingHead` fits heads with it; ``select``'s
``spread-margin`` strategy reads :func:`spread_scores` to find the rows whose spread
label is least sure.

    embedkit select feats.h5 --budget 100 --strategy spread-margin --out picks.csv

Examples
--------
>>> from sklearn.datasets import make_blobs
>>> X, y = make_blobs(200, 5, centers=2, random_state=0)
>>> labels = np.full(200, -1); labels[:4] = y[:4]
>>> F = spread_scores(X, labels)
>>> F.shape, bool((F.argmax(1) == y).mean() > 0.9)
((200, 2), True)
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import diags, identity

from embedkit.heads.graph import feature_graph

_SINKHORN_ITERS = 50  # balance: alternate column and row scaling this many times


def spread_operator(W, alpha: float, max_iter: int):
    """``solve(Y) -> (F, steps)``: label spreading of seed scores ``Y`` (M, K) over ``W``.

    Zhou et al. (2004): ``F = (I - alpha S)^-1 Y`` with ``S = D^-1/2 W D^-1/2``, by
    conjugate gradients; rows of ``F`` are clipped at 0 and sum to 1 (uniform where
    nothing reached them). ``W`` None (under 3 rows) returns ``Y`` as it is.
    """
    if W is None:
        return lambda Y: (Y, np.ones(Y.shape[1], np.int64))
    m = W.shape[0]
    d = np.asarray(W.sum(1)).ravel()
    inv = diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    A = identity(m, format="csr") - alpha * (inv @ W @ inv)  # (M, M), s.p.d.

    def solve(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        F, steps = _cg(A, Y, max_iter)
        F = np.maximum(F, 0)
        total = F.sum(1, keepdims=True)
        return np.where(total > 0, F / np.maximum(total, 1e-12), 1.0 / Y.shape[1]), steps

    return solve


def spread_scores(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    graph: str = "centre",
    alpha: float = 0.99,
    balance: str = "uniform",
    n_neighbors: int = 10,
    max_iter: int = 20,
) -> np.ndarray:
    """Spread class scores (N, K) of every row of ``X`` from its labelled rows.

    ``labels`` (N,) holds a class index per labelled row and ``-1`` elsewhere; column
    ``j`` of the result is the ``j``-th labelled class in sorted order. The graph is
    :func:`embedkit.heads.graph.feature_graph` of ``X`` after ``graph`` (memoised: one
    per pool however many rounds read it); ``balance`` as in :func:`balance_scores`.
    """
    labels = np.asarray(labels)
    known = labels >= 0
    classes, y_index = np.unique(labels[known], return_inverse=True)
    Y = np.zeros((len(X), len(classes)))
    Y[np.flatnonzero(known), y_index] = 1.0
    W = feature_graph(X, graph, n_neighbors=n_neighbors) if len(X) >= 3 else None
    F, _ = spread_operator(W, alpha, max_iter)(Y)
    return balance_scores(F, balance, y_index)


def _cg(A, B: np.ndarray, maxiter: int, rtol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Conjugate gradients for ``A X = B``, every column at once: ``(X, iterations per column)``.

    Each column follows scipy's ``cg`` (start at 0, stop when ``|r| < rtol |b|``; a zero column
    stays 0), but one sparse product per step serves all columns.

    Examples
    --------
    >>> from scipy.sparse import csr_matrix
    >>> X, steps = _cg(csr_matrix([[2.0, 1.0], [1.0, 3.0]]), np.array([[1.0, 0.0], [2.0, 0.0]]), 10)
    >>> np.round(X, 6).tolist(), steps.tolist()
    ([[0.2, 0.0], [0.6, 0.0]], [2, 0])
    """
    X = np.zeros(B.shape)
    R = np.array(B, dtype=np.float64)
    P = np.zeros_like(R)
    stop = rtol * np.linalg.norm(R, axis=0)
    rho_prev = np.ones(R.shape[1])
    steps = np.zeros(R.shape[1], np.int64)
    for i in range(maxiter):
        rho = np.einsum("ij,ij->j", R, R)  # |r|^2 per column
        live = (np.sqrt(rho) >= stop) & (stop > 0)
        if not live.any():
            break
        beta = np.divide(rho, rho_prev, out=np.zeros_like(rho), where=live & (i > 0))
        P = R + beta * P
        Q = A @ P
        alpha = np.divide(rho, np.einsum("ij,ij->j", P, Q), out=np.zeros_like(rho), where=live)
        X += alpha * P
        R -= alpha * Q
        rho_prev = rho
        steps += live
    return X, steps


def balance_scores(F: np.ndarray, balance: str, y_labelled: np.ndarray) -> np.ndarray:
    """Label scores ``F`` (M, K) rescaled so the classes share the rows as ``balance`` says.

    ``none`` returns ``F``. ``uniform`` and ``labelled`` alternate scaling the columns to
    the target class masses (M / K each, or M times the labelled rows' class shares,
    plus one each) and the rows to sum 1 (Sinkhorn-Knopp): a row moves to a class whose
    total falls short of its share only when it was near that class already.

    Examples
    --------
    >>> F = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    >>> balance_scores(F, "uniform", np.array([0, 1])).argmax(1).tolist()
    [0, 0, 1, 1]
    """
    if balance == "none":
        return F
    m, k = F.shape
    if balance == "uniform":
        share = np.full(k, 1.0 / k)
    else:
        share = np.bincount(y_labelled, minlength=k) + 1.0
        share /= share.sum()
    Q = np.maximum(F, 1e-9)
    # The scaled scores are r[:, None] * Q * c; each step updates the scales, not Q itself.
    r = np.ones(m)
    for _ in range(_SINKHORN_ITERS):
        c = (m * share) / (r @ Q)  # (K,) columns to their class masses
        r = 1.0 / (Q @ c)  # (M,) then rows to sum 1
    return r[:, None] * Q * c


def one_hot(y_index: np.ndarray, k: int, m: int) -> np.ndarray:
    """Seed scores (M, K): one-hot rows for the first ``len(y_index)`` rows, zeros after."""
    Y = np.zeros((m, k))
    Y[np.arange(len(y_index)), y_index] = 1.0
    return Y
