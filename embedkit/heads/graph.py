"""Nearest neighbours on cached features: exact, in blocks of rows, with numpy BLAS.

Selection and label spreading read features L2-normalised (:func:`unit_rows`), so the
squared distance of two rows is ``2 - 2 cos``; :func:`knn` ranks by cosine similarity
one block of query rows at a time, holding a (block, N) similarity matrix and never
the whole (N, N).

A graph depends only on the rows it is built on, not on which of them are labelled, so
every graph goes through :func:`memo`: a small in-process cache keyed by a digest of the
rows and the graph's parameters. ``bench --labelling`` fits the spread head a hundred
times on one pool; the kNN graphs and the PCA behind them are built once per pool.
:func:`feature_graph` is the one way a head builds a graph: rows -> a transform of
:data:`TRANSFORMS` -> unit rows -> :func:`knn_graph`, memoised.

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

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy is imported where a graph is built: `embedkit --help` needs none
    from scipy import sparse

_BLOCK_BYTES = 64 << 20  # the (block, N) similarity matrix of one block of queries
_MEMO_BYTES = 256 << 20  # the memo keeps its most recent results up to this size
_WHITE_DIMS = 128  # the "whiten" transform: PCA components kept
_FIT_ROWS = 20_000  # the whitening PCA and the spectrum are fitted on at most this many rows
_SPECTRUM_ROWS = 2048  # effective_rank: rows of the sample whose spectrum it measures


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
    from scipy import sparse

    n = len(X)
    sim, idx = knn(X, k)
    rows = np.repeat(np.arange(n), sim.shape[1])
    weights = np.maximum(sim.ravel(), 0.0) ** power
    W = sparse.csr_matrix((weights, (rows, idx.ravel())), shape=(n, n))
    return (W + W.T).tocsr()


def _sample(X: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` rows of ``X`` (a fixed-seed sample, in order), all when fewer."""
    if len(X) <= n:
        return X
    return X[np.sort(np.random.default_rng(0).choice(len(X), n, replace=False))]


def _whiten(X: np.ndarray) -> np.ndarray:
    """PCA-whitened rows (N, <= 128), then centred unit rows (PCA fitted on <= 20,000 rows)."""
    from sklearn.decomposition import PCA

    dims = min(_WHITE_DIMS, X.shape[1], len(X) - 1)
    if dims >= 2:
        pca = PCA(dims, whiten=True, svd_solver="covariance_eigh", random_state=0)
        X = pca.fit(_sample(X, _FIT_ROWS)).transform(X)
    return unit_rows(X, center=True)


def effective_rank(X: np.ndarray) -> float:
    """The effective rank of the rows' covariance: ``exp`` of the entropy of its spectrum.

    Roy & Vetterli (2007): ``D`` for isotropic rows, 1 when one direction holds all the
    variance; measured on centred unit rows (a sample of at most 2,048).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(effective_rank(rng.normal(size=(2000, 8))))
    8
    >>> effective_rank(rng.normal(size=(2000, 1)) * [1, 2, 3]) < 1.01
    True
    """
    Z = unit_rows(_sample(X, _SPECTRUM_ROWS), center=True).astype(np.float64)
    Z -= Z.mean(0)
    power = np.linalg.eigvalsh(Z @ Z.T if len(Z) < Z.shape[1] else Z.T @ Z)  # the smaller
    p = power[power > 1e-12 * power.max()] / power.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def whitens(X: np.ndarray) -> bool:
    """Whether ``X`` (N, D) is better clustered PCA-whitened than centred (``typical``).

    True when the features have more than the 128 dimensions whitening keeps but an
    effective rank under 128 (:func:`effective_rank`, memoised): a few directions
    dominate the distances (a CNN's pooled features: Lite0's 1,280 on Fashion-MNIST have
    an effective rank of 97, on digits 47), and whitening drops the weak tail and weighs
    the rest alike. False when the spectrum is already flat (MiniLM's 384 on fortunes:
    195), where 128 components would drop much of it, and at 128 dimensions or fewer,
    where whitening drops nothing and only inflates the weakest directions. A rule on
    the features alone: it needs no labels, so it holds at one label per class.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> strong = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 200)) * 10
    >>> whitens(strong + rng.normal(size=(300, 200)))
    True
    >>> whitens(rng.normal(size=(300, 200))), whitens(strong[:, :100])
    (False, False)
    """
    X = np.asarray(X).reshape(len(X), -1)
    if X.shape[1] <= _WHITE_DIMS:
        return False
    sample = _sample(X, _SPECTRUM_ROWS)  # memoised on the sample: a cheap digest
    return memo(sample, ("effective_rank",), lambda: effective_rank(sample)) < _WHITE_DIMS


def pick_space(X: np.ndarray, centred: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The rows ``typical`` clusters: (unit rows (N, D'), ``"whiten"`` or ``"centre"``).

    PCA-whitened (:data:`TRANSFORMS` ``whiten``, memoised) where :func:`whitens`,
    else centred unit rows: ``centred`` where the caller has them already.
    """
    X = np.asarray(X).reshape(len(X), -1)
    if whitens(X):
        return memo(X, ("transform", "whiten"), lambda: _whiten(X)), "whiten"
    return (unit_rows(X, center=True) if centred is None else centred), "centre"


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "centre": lambda X: unit_rows(X, center=True),  # centred unit rows
    "whiten": _whiten,  # PCA-whitened (<= 128 dims), centred unit rows
}  # what a graph is built on: rows (N, D) -> unit rows (N, D')


def feature_graph(
    X: np.ndarray, transform: str = "centre", *, n_neighbors: int = 10, power: float = 3.0
) -> sparse.csr_matrix:
    """The kNN graph (N, N) of rows ``X`` after ``transform``, memoised on ``X``'s digest.

    Row ``i`` of the graph is row ``i`` of ``X``; a caller wanting one graph per pool
    passes the pool's rows in one fixed order (e.g. sorted row numbers). The result is
    shared between callers: treat it as read-only.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    >>> feature_graph(X, "whiten", n_neighbors=5) is feature_graph(X, "whiten", n_neighbors=5)
    True
    """
    build = TRANSFORMS[transform]
    return memo(X, ("graph", transform, n_neighbors, power),
                lambda: knn_graph(build(X), n_neighbors, power=power))  # fmt: skip


class _Memo:
    """An LRU map from (digest of an array, key) to a result, at most ``_MEMO_BYTES``."""

    def __init__(self):
        self.items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                self.hits += 1
                return self.items[key][0]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        size = _nbytes(value)
        with self.lock:
            self.items[key] = (value, size)
            while len(self.items) > 1 and sum(s for _, s in self.items.values()) > _MEMO_BYTES:
                self.items.popitem(last=False)


_MEMO = _Memo()


def memo(X: np.ndarray, key: tuple, build: Callable[[], object]):
    """``build()``, or the result it gave before for the same rows ``X`` and ``key``.

    ``X`` is identified by a BLAKE2 digest of its bytes, shape and dtype (about 10 ms
    for 10,000 x 384 float32), so equal rows hit whichever array holds them.
    :func:`memo_info` counts hits and misses; :func:`clear_memo` empties it.
    """
    X = np.ascontiguousarray(X)
    digest = hashlib.blake2b(memoryview(X).cast("B"), digest_size=16)
    digest.update(f"{X.shape}{X.dtype.str}".encode())
    full = (digest.hexdigest(), *key)
    found = _MEMO.get(full)
    if found is None:
        found = build()
        for array in found if isinstance(found, tuple) else (found,):
            if isinstance(array, np.ndarray):
                array.flags.writeable = False  # shared between callers
        _MEMO.put(full, found)
    return found


def memo_info() -> dict:
    """``{"hits", "misses", "items"}`` of :func:`memo` in this process."""
    return {"hits": _MEMO.hits, "misses": _MEMO.misses, "items": len(_MEMO.items)}


def clear_memo() -> None:
    """Forget every memoised graph (and reset the counts)."""
    with _MEMO.lock:
        _MEMO.items.clear()
        _MEMO.hits = _MEMO.misses = 0


def _nbytes(value) -> int:
    from scipy import sparse

    if sparse.issparse(value):
        value = (value.data, value.indices, value.indptr)
    if isinstance(value, np.ndarray):
        return value.nbytes
    return sum(_nbytes(v) for v in value) if isinstance(value, tuple) else 0
