"""Nearest neighbours on cached features: exact, in blocks of rows, with numpy BLAS.

Selection and label spreading read features L2-normalised (:func:`unit_rows`), so the
squared distance of two rows is ``2 - 2 cos``; :func:`knn` ranks by cosine similarity
one block of query rows at a time, holding a (block, N) similarity matrix and never
the whole (N, N).

    embedkit select feats.h5 --budget 100 --strategy coverage --out picks.csv

Examples
--------
>>> import numpy as np
>>> X = unit_rows(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 1]], np.float32))
>>> sim, idx = knn(X, 1)
>>> idx[:, 0].tolist()
[1, 0, 3, 2]
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

_BLOCK_BYTES = 64 << 20  # the (block, N) similarity matrix of one block of queries


def unit_rows(X: np.ndarray, *, center: bool = False) -> np.ndarray:
    """``X`` (N, D) as float32 rows of unit length (an all-zero row stays zero).

    ``center`` first subtracts the mean row: features after a ReLU (e.g. a CNN's pooled
    features) are all positive, and their cosines only separate classes once centred.
    """
    X = np.array(X, dtype=np.float32).reshape(len(X), -1)  # a copy, normalised in place
    if center:
        X -= X.mean(0, dtype=np.float64).astype(np.float32)
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return X


def knn(
    X: np.ndarray, k: int, *, queries: np.ndarray | None = None, exclude_self: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar rows of unit rows ``X`` for each query row.

    Parameters
    ----------
    X : ndarray (N, D)
        Unit rows (see :func:`unit_rows`).
    k : int
        Neighbours per query; at most ``N - 1`` (``N`` when ``exclude_self`` is False).
    queries : ndarray (M, D), optional
        Unit query rows; None queries ``X`` itself.
    exclude_self : bool
        When querying ``X`` itself, leave each row out of its own neighbours.

    Returns
    -------
    sim, idx : ndarray (M, k) float32 and int64
        Similarities (descending) and row numbers into ``X``.
    """
    own = queries is None
    Q = X if own else queries
    n = len(X)
    k = int(min(k, n - 1 if own and exclude_self else n))
    sims = np.empty((len(Q), k), np.float32)
    idx = np.empty((len(Q), k), np.int64)
    block = max(1, _BLOCK_BYTES // (4 * max(n, 1)))
    for lo in range(0, len(Q), block):
        hi = min(lo + block, len(Q))
        S = Q[lo:hi] @ X.T  # (block, N)
        if own and exclude_self:
            S[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        part = (
            np.argpartition(-S, k - 1, axis=1)[:, :k]
            if k < n
            else np.tile(np.arange(n), (hi - lo, 1))
        )
        got = np.take_along_axis(S, part, axis=1)
        order = np.argsort(-got, axis=1)
        idx[lo:hi] = np.take_along_axis(part, order, axis=1)
        sims[lo:hi] = np.take_along_axis(got, order, axis=1)
    return sims, idx


def knn_graph(X: np.ndarray, k: int, *, power: float = 3.0) -> sparse.csr_matrix:
    """The symmetric affinity graph of unit rows: ``W_ij = max(cos, 0) ** power`` on kNN pairs.

    The weighting of Iscen et al. (CVPR 2019, label propagation for deep semi-supervised
    learning); the graph is made symmetric with ``W + W.T``.

    Examples
    --------
    >>> X = unit_rows(np.eye(3, dtype=np.float32) + 0.1)
    >>> knn_graph(X, 1).shape
    (3, 3)
    """
    n = len(X)
    sim, idx = knn(X, k)
    rows = np.repeat(np.arange(n), sim.shape[1])
    weights = np.maximum(sim.ravel(), 0.0) ** power
    W = sparse.csr_matrix((weights, (rows, idx.ravel())), shape=(n, n))
    return (W + W.T).tocsr()
