"""Which unlabelled rows to label next: selection strategies on cached features.

Every strategy takes the pool's features ``X`` (N, D), its labels (``-1`` = not labelled
yet) and a budget, and returns the rows to label, best first, with a score each:

- ``random``: a uniform sample (the baseline every other strategy must beat).
- ``typical``: TypiClust (Hacohen et al., ICML 2022): k-means into ``labelled + budget``
  clusters; from the largest clusters without a label, the most typical row
  (1 / mean distance to its k nearest neighbours within the cluster). It clusters
  PCA-whitened rows when the features' effective rank is under 128 (see
  :func:`embedkit.heads.graph.pick_space`; ``note`` says which).
- ``coverage``: ProbCover (Yehuda et al., NeurIPS 2022): greedy maximum coverage of
  balls of radius delta on a kNN graph; delta is the largest radius whose balls stay
  pure (95% of rows' balls hold one k-means cluster).
- ``margin`` / ``entropy``: the rows the current head (logreg on the labelled rows) is
  least sure of.
- ``hybrid``: cluster-margin: the most uncertain rows, spread by uncertainty-weighted
  k-means, one row per cluster.
- ``spread-margin``: half ``typical`` (new clusters, and classes no label has reached
  yet), half cluster-margin on label spreading instead of a head: the rows whose spread
  label (over a kNN graph of the rows ``typical`` clusters) is least sure, the borders
  between classes that spreading blurs.

:func:`select` also takes ``auto`` (see :mod:`embedkit.labelling.auto`).

    embedkit select feats.h5 --budget 100 --strategy typical --out picks.csv

Examples
--------
>>> from sklearn.datasets import make_blobs
>>> X, _ = make_blobs(600, 8, centers=6, random_state=0)
>>> pick = select(X, np.full(600, -1), 6, strategy="typical", seed=0)
>>> len(pick.rows), pick.strategy
(6, 'typical')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from embedkit.errors import UserInputError
from embedkit.heads.graph import knn, memo, pick_space, unit_rows

STRATEGIES = ("random", "typical", "coverage", "margin", "entropy", "hybrid", "spread-margin")
UNCERTAINTY = ("margin", "entropy", "hybrid", "spread-margin")  # need >= 2 labelled classes
_TYPICAL_K = 20  # neighbours of the typicality estimate (TypiClust's)
_TYPICAL_SAMPLE = 1000  # rows of one cluster the typicality is measured on
_KMEANS_EXACT = 20_000  # above this many rows, k-means is MiniBatchKMeans
_GRAPH_ROWS = 20_000  # coverage builds its kNN graph on at most this many pool rows
_GRAPH_K = 100  # neighbours per row of the coverage graph: the largest ball it sees
_PURITY = 0.95  # coverage: the fraction of pure balls delta must keep
_SPREAD_ROWS = 20_000  # spread-margin spreads over the labelled rows and at most this many more


@dataclass(frozen=True)
class Selection:
    """Rows picked to label, best first."""

    rows: np.ndarray  # (budget,) int64 row numbers into the pool
    scores: np.ndarray  # (budget,) float64: the strategy's score of each pick (higher = better)
    strategy: str  # the strategy that picked them (what ``auto`` chose)
    note: str = ""  # how it chose, e.g. auto's reason or coverage's delta


def select(
    X: np.ndarray,
    labels: np.ndarray,
    budget: int,
    *,
    strategy: str = "auto",
    seed: int = 0,
    head: str = "logreg",
    record: dict | None = None,
) -> Selection:
    """Pick ``budget`` rows of ``X`` whose label is ``-1`` to label next.

    Parameters
    ----------
    X : ndarray (N, D)
        The pool's features (e.g. a store's train rows).
    labels : ndarray (N,) int
        Class index of each row; ``-1`` where it is not labelled yet.
    budget : int
        How many rows to pick (at most the unlabelled rows).
    strategy : str
        One of :data:`STRATEGIES` or ``"auto"``.
    seed : int
        Seed of k-means and sampling.
    head : str
        The head whose uncertainty ``margin``, ``entropy`` and ``hybrid`` use.
    record : dict, optional
        For ``auto``: a ``bench --labelling`` summary of this store (see
        :func:`embedkit.labelling.auto.choose`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)); y = np.full(200, -1); y[:4] = [0, 1, 0, 1]
    >>> select(X, y, 5, strategy="margin").rows.shape
    (5,)
    """
    labels = np.asarray(labels)
    raw, X = X, unit_rows(X, center=True)  # (N, D)
    if len(X) != len(labels):
        raise UserInputError(f"{len(X)} feature rows but {len(labels)} labels")
    pool = np.flatnonzero(labels < 0)
    if budget < 1 or budget > len(pool):
        raise UserInputError(
            f"--budget {budget}: pick between 1 and the {len(pool)} unlabelled rows"
        )
    note = ""
    if strategy == "auto":
        from embedkit.labelling.auto import choose

        strategy, note = choose(labels, budget, record)
    if strategy not in STRATEGIES:
        raise UserInputError(f"unknown strategy {strategy!r}; known: auto, {', '.join(STRATEGIES)}")
    if strategy in UNCERTAINTY and len(np.unique(labels[labels >= 0])) < 2:
        raise UserInputError(
            f"strategy {strategy!r} needs labelled rows of at least 2 classes (it asks the "
            "current head); label a first round with --strategy typical"
        )
    rng = np.random.default_rng(seed)
    if strategy == "random":
        rows, scores = rng.choice(pool, budget, replace=False), np.zeros(budget)
    elif strategy == "typical":
        space, how = pick_space(raw, centred=X)  # X: the centred unit rows made above
        rows, scores = typical(space, labels >= 0, budget, seed=seed)
        note = f"{note}; clusters {how} rows" if note else f"clusters {how} rows"
    elif strategy == "coverage":
        rows, scores, delta = coverage(X, labels, budget, seed=seed)
        note = note or f"delta={delta:.3f}"
    elif strategy == "spread-margin":
        space, how = pick_space(raw, centred=X)
        # half typical: new clusters (and classes no label has reached yet), half borders
        rows, scores = typical(space, labels >= 0, budget - budget // 2, seed=seed)
        if budget // 2:
            more, margins = spread_margin(raw, space, labels, budget // 2, graph=how,
                                          seed=seed, taken=rows)  # fmt: skip
            rows, scores = np.concatenate([rows, more]), np.concatenate([scores, margins])
        note = f"{note}; spreads over {how} rows" if note else f"spreads over {how} rows"
    else:
        u = uncertainty(X, labels, pool, kind="entropy" if strategy == "entropy" else "margin",
                        head=head, seed=seed)  # fmt: skip
        if strategy == "hybrid":
            rows, scores = cluster_margin(X[pool], u, budget, seed=seed)
            rows = pool[rows]
        else:
            top = np.argsort(-u, kind="stable")[:budget]
            rows, scores = pool[top], u[top]
    return Selection(np.asarray(rows, np.int64), np.asarray(scores, np.float64), strategy, note)


def kmeans_labels(
    X: np.ndarray, k: int, *, seed: int, weights=None
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``X`` into ``k`` clusters: (labels (N,), centres (k, D)).

    Exact k-means (one init) up to 20,000 rows, MiniBatchKMeans above.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = int(min(k, len(X)))
    if len(X) <= _KMEANS_EXACT:  # float64: k-means++ on float32 takes a slow upcasting path
        X = np.asarray(X, np.float64)
        km = KMeans(k, n_init=1, random_state=seed, max_iter=100)
    else:  # k-means++ seeds from a float64 sample (its float32 path upcasts slowly)
        from sklearn.cluster import kmeans_plusplus

        rng = np.random.default_rng(seed)
        sample = X[np.sort(rng.choice(len(X), min(len(X), max(3 * 4096, 10 * k)), replace=False))]
        init, _ = kmeans_plusplus(np.asarray(sample, np.float64), k, random_state=seed)
        km = MiniBatchKMeans(k, init=init.astype(X.dtype), n_init=1, random_state=seed,
                             batch_size=4096, max_iter=10, max_no_improvement=3)  # fmt: skip
    km.fit(X, sample_weight=weights)
    return km.labels_.astype(np.int64), km.cluster_centers_


def typicality(X: np.ndarray, k: int = _TYPICAL_K) -> np.ndarray:
    """1 / mean distance of each row of unit rows ``X`` to its ``k`` nearest rows."""
    if len(X) < 2:
        return np.ones(len(X))
    sim, _ = knn(X, k)
    dist = np.sqrt(np.maximum(2 - 2 * sim.astype(np.float64), 0))  # (N, k)
    return 1.0 / (dist.mean(1) + 1e-8)


def typical(X: np.ndarray, labelled: np.ndarray, budget: int, *, seed: int):
    """TypiClust: the most typical unlabelled row of each of the largest uncovered clusters."""
    rng = np.random.default_rng(seed)
    clusters, _ = kmeans_labels(X, int(labelled.sum()) + budget, seed=seed)
    k = clusters.max() + 1
    sizes = np.bincount(clusters, minlength=k)
    covered = np.bincount(clusters[labelled], minlength=k)  # labelled rows per cluster
    taken = labelled.copy()
    rows, scores = [], []
    while len(rows) < budget:
        # the cluster with the fewest labels, then the largest, that still has free rows
        free = np.bincount(clusters[~taken], minlength=k)
        order = np.lexsort((-sizes, covered))
        c = next(int(c) for c in order if free[c] > 0)
        members = np.flatnonzero(clusters == c)
        if len(members) > _TYPICAL_SAMPLE:
            members = np.sort(rng.choice(members, _TYPICAL_SAMPLE, replace=False))
        typ = typicality(X[members])
        typ[taken[members]] = -np.inf
        if not np.isfinite(typ).any():  # every sampled row is taken: any free row will do
            free_rows = np.flatnonzero((clusters == c) & ~taken)
            best, score = int(free_rows[0]), 0.0
        else:
            j = int(np.argmax(typ))
            best, score = int(members[j]), float(typ[j])
        rows.append(best)
        scores.append(score)
        taken[best] = True
        covered[c] += 1
    return np.array(rows), np.array(scores)


def purity_delta(sim: np.ndarray, idx: np.ndarray, clusters: np.ndarray) -> float:
    """The largest ball radius (as a cosine similarity bound) whose balls stay pure.

    A ball is pure when every neighbour inside it shares the centre's k-means cluster;
    delta is the largest distance at which at least 95% of balls are pure.
    """
    same = clusters[idx] == clusters[:, None]  # (N, k)
    dist = np.sqrt(np.maximum(2 - 2 * sim, 0))  # (N, k), ascending along each row
    # the radius of a row's ball stays pure until its first neighbour of another cluster
    first_bad = np.where(~same, dist, np.inf).min(1)  # (N,)
    candidates = np.quantile(dist[:, -1], np.linspace(0.01, 1.0, 50))
    pure = [(first_bad > d).mean() for d in candidates]
    ok = [d for d, p in zip(candidates, pure) if p >= _PURITY]
    return float(max(ok)) if ok else float(candidates[0])


def coverage(X: np.ndarray, labels: np.ndarray, budget: int, *, seed: int):
    """ProbCover: greedily pick the rows whose delta-balls cover the most uncovered rows."""
    rng = np.random.default_rng(seed)
    n = len(X)
    sub = np.arange(n)
    if n > _GRAPH_ROWS:  # the graph's rows: every labelled row and a sample of the rest
        unl = np.flatnonzero(labels < 0)
        sub = np.union1d(np.flatnonzero(labels >= 0), rng.choice(unl, _GRAPH_ROWS, replace=False))
    Xs, lab = X[sub], labels[sub] >= 0
    n_classes = max(len(np.unique(labels[labels >= 0])), 10)
    clusters, _ = kmeans_labels(Xs, n_classes, seed=seed)
    sim, idx = memo(Xs, ("knn", _GRAPH_K), lambda: knn(Xs, _GRAPH_K))  # one per pool
    delta = purity_delta(sim, idx, clusters)
    dist = np.sqrt(np.maximum(2 - 2 * sim, 0))
    inside = dist <= delta
    m = len(Xs)
    rows = np.repeat(np.arange(m), idx.shape[1])[inside.ravel()]
    ball = sparse.csr_matrix(
        (np.ones(inside.sum()), (rows, idx.ravel()[inside.ravel()])), shape=(m, m)
    ) + sparse.identity(m, format="csr")  # ball[i, j] = 1: i covers j
    uncovered = np.ones(m)
    for i in np.flatnonzero(lab):
        uncovered[ball[i].indices] = 0
    picked, scores = [], []
    free = ~lab
    for _ in range(budget):
        gain = ball @ uncovered  # (m,) rows each ball would newly cover
        gain[~free] = -1
        if gain.max() <= 0:  # everything covered: fall back to a random free row
            i = int(rng.choice(np.flatnonzero(free)))
        else:
            i = int(np.argmax(gain))
        picked.append(i)
        scores.append(float(max(gain[i], 0)))
        free[i] = False
        uncovered[ball[i].indices] = 0
    return sub[np.array(picked)], np.array(scores), delta


def uncertainty(X, labels, pool, *, kind: str, head: str, seed: int) -> np.ndarray:
    """Uncertainty of each ``pool`` row under ``head`` fitted on the labelled rows.

    ``margin``: 1 - (top probability - second); ``entropy``: the entropy of the probabilities.
    """
    from embedkit.heads import make_head

    labelled = labels >= 0
    model = make_head(head, random_state=seed).fit(X[labelled], labels[labelled])
    proba = model.predict_proba(X[pool])  # (P, K)
    if kind == "entropy":
        return -(proba * np.log(np.clip(proba, 1e-12, 1))).sum(1)
    top2 = -np.sort(-proba, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - (top2[:, 1] if proba.shape[1] > 1 else 0.0))


def spread_margin(raw, space, labels, budget: int, *, graph: str, seed: int, taken=()):
    """Cluster-margin on the margins of label spreading over ``graph`` (see ``spread_scores``).

    ``raw`` (N, D) are the features, ``space`` (N, D') the unit rows the picks are
    clustered in; ``taken``: unlabelled rows already picked this round (not picked
    again). Over 20,000 unlabelled rows, a random sample of them is spread over.
    """
    from embedkit.heads.spreading import spread_scores

    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(np.flatnonzero(labels < 0), taken)
    if len(pool) > _SPREAD_ROWS:
        pool = np.sort(rng.choice(pool, _SPREAD_ROWS, replace=False))
    # rows in order: every pool under the limit spreads over one memoised graph, round
    # after round (and the same one the spread head builds)
    rows = np.union1d(np.flatnonzero(labels >= 0), pool)  # (M,)
    F = spread_scores(raw[rows], labels[rows], graph=graph)  # (M, K), rows sum to 1
    top2 = -np.sort(-F[np.searchsorted(rows, pool)], axis=1)[:, :2]  # (P, 2)
    u = 1.0 - (top2[:, 0] - top2[:, 1])  # (P,) 1 - margin of the spread label
    picked, scores = cluster_margin(space[pool], u, budget, seed=seed)
    return pool[picked], scores


def cluster_margin(X: np.ndarray, u: np.ndarray, budget: int, *, seed: int):
    """The most uncertain rows (10x budget), k-means weighted by uncertainty, one per cluster."""
    top = np.argsort(-u, kind="stable")[: min(len(u), 10 * budget)]
    clusters, centres = kmeans_labels(X[top], budget, seed=seed, weights=u[top] + 1e-6)
    rows, scores = [], []
    for c in range(clusters.max() + 1):
        members = top[clusters == c]
        if len(members):
            j = members[np.argmax(X[members] @ centres[c])]  # nearest the centre
            rows.append(j)
            scores.append(u[j])
    rest = np.setdiff1d(top, rows)  # empty clusters: fill with the next most uncertain
    rows += rest[np.argsort(-u[rest], kind="stable")][: budget - len(rows)].tolist()
    scores += u[rows[len(scores) :]].tolist()
    return np.array(rows), np.array(scores)
