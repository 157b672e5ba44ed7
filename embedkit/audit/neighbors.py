"""Near-duplicates and k-NN outliers from one blocked pass of cosine similarities.

    embedkit audit feats.h5 --dup-threshold 0.98 --out audit/

The features are L2-normalised in float32, then compared tile by tile
(``block_size`` x ``block_size`` similarities at a time), so memory stays bounded
by the block size however many items there are. Only tiles on or above the
diagonal are computed; each tile updates the running top-k of both its row and its
column items, and contributes the pairs above the duplicate threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedkit.errors import UserInputError
from embedkit.heads.graph import unit_rows as l2_normalize  # one L2 normalisation; name kept


@dataclass(frozen=True)
class NeighborScan:
    """What one blocked pass found."""

    pairs: np.ndarray  # (P, 2) int64 rows (i, j), i < j, of near-duplicates, most similar first
    similarity: np.ndarray  # (P,) float32 cosine similarity of each pair
    n_pairs_total: int  # pairs above the threshold before max_pairs kept the most similar
    knn_index: np.ndarray  # (N, k) int64: the k nearest other items of each item, nearest first
    knn_similarity: np.ndarray  # (N, k) float32: their cosine similarities
    outlier_score: np.ndarray  # (N,) float32 mean cosine distance to the k nearest: higher is odder

    @property
    def truncated(self) -> bool:
        """True when more pairs crossed the threshold than were kept."""
        return self.n_pairs_total > len(self.pairs)


def neighbor_scan(
    features: np.ndarray,
    *,
    threshold: float = 0.98,
    k: int = 10,
    block_size: int = 4096,
    max_pairs: int = 100_000,
    on_tile=None,
) -> NeighborScan:
    """Find near-duplicate pairs and each item's k nearest neighbours by cosine similarity.

    Parameters
    ----------
    features : ndarray, shape (N, ...)
        One feature vector per item (flattened if it has more axes).
    threshold : float
        Pairs with cosine similarity ``>= threshold`` are near-duplicates.
    k : int
        Neighbours per item for the outlier score (fewer if there are fewer items).
    block_size : int
        Rows per tile; memory for similarities is about ``4 * block_size**2`` bytes.
    on_tile : callable, optional
        Called with no argument after each tile (progress).
    max_pairs : int
        Keep at most this many pairs, the most similar (``n_pairs_total`` counts all).

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    >>> scan = neighbor_scan(x, threshold=0.99, k=1, block_size=2)
    >>> scan.pairs.tolist(), scan.knn_index[:, 0].tolist()
    ([[0, 1]], [1, 0, 1])
    """
    if not -1.0 <= threshold <= 1.0:
        raise UserInputError(f"dup threshold {threshold} is not a cosine; use a value in [-1, 1]")
    if block_size < 1 or k < 1 or max_pairs < 0:
        raise UserInputError(
            f"block_size={block_size}, k={k}, max_pairs={max_pairs}: "
            "block_size and k must be >= 1 and max_pairs >= 0"
        )
    z = l2_normalize(features)  # (N, D)
    n = len(z)
    k_eff = min(k, max(n - 1, 0))
    top_sim = np.full((n, k_eff), -np.inf, dtype=np.float32)  # (N, k)
    top_idx = np.full((n, k_eff), -1, dtype=np.int64)  # (N, k)
    pairs = _PairBuffer(max_pairs)
    for a in range(0, n, block_size):
        za = z[a : a + block_size]  # (Ba, D)
        for b in range(a, n, block_size):
            sims = za @ z[b : b + block_size].T  # (Ba, Bb)
            if a == b:
                np.fill_diagonal(sims, -np.inf)  # an item is not its own neighbour
            hits = sims >= threshold  # (Ba, Bb); in a diagonal tile, each pair once (i < j)
            rows, cols = np.nonzero(np.triu(hits, 1) if a == b else hits)
            pairs.add(rows + a, cols + b, sims[rows, cols])
            if on_tile is not None:
                on_tile()
            if k_eff:
                _merge_topk(top_sim[a : a + block_size], top_idx[a : a + block_size], sims, b)
                if b != a:
                    _merge_topk(top_sim[b : b + block_size], top_idx[b : b + block_size], sims.T, a)
    return NeighborScan(*pairs.result(), *_nearest_first(top_sim, top_idx))


def brute_force_scan(features: np.ndarray, *, threshold: float = 0.98, k: int = 10) -> NeighborScan:
    """:func:`neighbor_scan` with one N x N matrix: the reference for tests and benchmarks.

    Examples
    --------
    >>> brute_force_scan(np.eye(3), threshold=0.5, k=1).pairs.shape
    (0, 2)
    """
    z = l2_normalize(features)
    sims = z @ z.T  # (N, N)
    np.fill_diagonal(sims, -np.inf)
    rows, cols = np.nonzero(np.triu(sims >= threshold, 1))
    sim = sims[rows, cols]
    order = np.lexsort((cols, rows, -sim))
    k_eff = min(k, max(len(z) - 1, 0))
    idx = np.argpartition(-sims, max(k_eff - 1, 0), axis=1)[:, :k_eff]  # (N, k)
    top = np.take_along_axis(sims, idx, axis=1)
    pairs = np.stack([rows[order], cols[order]], axis=1).astype(np.int64)
    return NeighborScan(pairs, sim[order], len(sim), *_nearest_first(top, idx))


def _nearest_first(sim: np.ndarray, idx: np.ndarray):
    """Each item's neighbours (N, k) nearest first, and the outlier score 1 - their mean."""
    order = np.argsort(-sim, axis=1, kind="stable")
    sim, idx = np.take_along_axis(sim, order, 1), np.take_along_axis(idx, order, 1)
    score = 1.0 - sim.mean(axis=1) if sim.shape[1] else np.zeros(len(sim))
    return idx, sim, score.astype(np.float32)


def _merge_topk(cur_sim: np.ndarray, cur_idx: np.ndarray, sims: np.ndarray, offset: int) -> None:
    """Fold a tile's similarities (B, T) into the running top-k (B, k), in place."""
    k = cur_sim.shape[1]
    if sims.shape[1] > k:
        part = np.argpartition(sims, -k, axis=1)[:, -k:]  # (B, k) columns of the tile
        cand_sim = np.take_along_axis(sims, part, axis=1)
        cand_idx = part + offset
    else:
        cand_sim = sims
        cand_idx = np.broadcast_to(np.arange(sims.shape[1]) + offset, sims.shape)
    all_sim = np.concatenate([cur_sim, cand_sim], axis=1)  # (B, k + k')
    all_idx = np.concatenate([cur_idx, cand_idx], axis=1)
    best = np.argpartition(all_sim, -k, axis=1)[:, -k:]
    cur_sim[:] = np.take_along_axis(all_sim, best, axis=1)
    cur_idx[:] = np.take_along_axis(all_idx, best, axis=1)


class _PairBuffer:
    """Collects pairs tile by tile and keeps at most ``limit`` of the most similar."""

    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.buffered = 0

    def add(self, rows: np.ndarray, cols: np.ndarray, sims: np.ndarray) -> None:
        if not len(rows):
            return
        self.total += len(rows)
        self.chunks.append((rows.astype(np.int64), cols.astype(np.int64), sims))
        self.buffered += len(rows)
        if self.buffered > 2 * self.limit + 4096:
            self._prune()

    def _prune(self) -> None:
        rows, cols, sims = (np.concatenate(parts) for parts in zip(*self.chunks))
        order = np.lexsort((cols, rows, -sims))[: self.limit]
        self.chunks = [(rows[order], cols[order], sims[order])]
        self.buffered = len(order)

    def result(self) -> tuple[np.ndarray, np.ndarray, int]:
        if not self.chunks:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32), 0
        self._prune()
        rows, cols, sims = self.chunks[0]
        return np.stack([rows, cols], axis=1), sims.astype(np.float32), self.total
