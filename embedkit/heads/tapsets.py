"""Tap sets: which taps of a store a head reads, and how several taps become one row.

    embedkit train feats.h5 --head logreg --tap blocks.14+pool --out head/
    embedkit bench feats.h5 --taps all --out bench/          # every tap, one at a time
    embedkit bench feats.h5 --taps all,joined --out bench/   # ... and all of them joined
    embedkit bench feats.h5 --taps blocks.10,blocks.14,blocks.14+pool --out bench/

A tap set is one tap (``pool``) or several joined with ``+`` (``blocks.14+pool``). One
tap is read as stored: no scaling, flattened to rows unless the head takes feature maps.
Several taps are joined by :class:`TapJoin`: each tap is flattened, standardised per
feature with the mean and standard deviation of the training rows, and scaled by
``1/sqrt(width)``, so that each tap adds about 1 to a row's squared norm whatever its
width (a 1,280-d tap does not drown a 40-d one); then the taps are concatenated in the
order given. The statistics travel with the head (``train.json``) and into a deployed
ONNX model.

Examples
--------
>>> parse_tap_sets("a,b+c", ["a", "b", "c"])
[('a',), ('b', 'c')]
>>> parse_tap_sets("all", ["final", "early", "late"])
[('early',), ('late',), ('final',)]
>>> parse_tap_sets("joined", ["final", "early", "late"])
[('early', 'late', 'final')]
>>> tap_set_name(("b", "c"))
'b+c'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedkit.errors import UserInputError

JOIN = "+"  # joins the taps of one set: "blocks.14+pool"
ALL_TAPS = "all"  # every tap of the store alone, by depth (see depth_order)
ALL_JOINED = "joined"  # every tap of the store joined into one set, by depth
_MIN_STD = 1e-6  # a feature with a smaller spread (e.g. a dead channel) is only centred
AGREE = 0.5  # loop_taps: the share of kNN lists a tap must have in common with the default tap's
_AGREE_ROWS, _AGREE_K = 2000, 10  # loop_taps: rows sampled, neighbours compared per row


def tap_set_name(taps: Sequence[str]) -> str:
    """The name of a tap set: its taps joined by ``+``."""
    return JOIN.join(taps)


def parse_tap_set(
    text: str | Sequence[str], available: Sequence[str], where: str = "--tap", store="the store"
):
    """One tap set from ``"a+b"`` (or a list of taps); each tap must be in ``available``.

    Examples
    --------
    >>> parse_tap_set("pool+blocks.4", ["blocks.4", "pool"])
    ('pool', 'blocks.4')
    >>> parse_tap_set("joined", ["pool", "blocks.4"])  # every tap, shallow to deep
    ('blocks.4', 'pool')
    """
    if isinstance(text, str) and text.strip() == ALL_JOINED:
        return tuple(depth_order(available))
    parts = text.split(JOIN) if isinstance(text, str) else [str(t) for t in text]
    taps = tuple(t.strip() for t in parts)
    if not taps or "" in taps:
        raise UserInputError(f"{where} {text!r} has an empty tap name; give e.g. blocks.14+pool")
    for tap in taps:
        if tap not in available:
            raise UserInputError(
                f"{where} {tap!r} is not a tap of {store}; its taps: {', '.join(available)}"
            )
    if len(set(taps)) < len(taps):
        raise UserInputError(f"{where} {text!r} names a tap twice; give each tap once")
    return taps


def parse_tap_sets(
    spec, available: Sequence[str], where: str = "--taps", store="the store"
) -> list[tuple]:
    """The tap sets of ``spec``: ``"all"``, ``"joined"``, ``"a,b,c"``, ``"a+b"``, a mix, or a
    list of them.

    ``None`` or ``"all"`` gives every tap of ``available`` alone, in :func:`depth_order`;
    ``"joined"`` one set of all of them joined, in that order (one tap: that tap alone).
    Repeated sets are kept once.
    """
    items = [spec] if spec is None or isinstance(spec, str) else list(spec)
    sets: list[tuple] = []
    for item in items:
        for text in [ALL_TAPS] if item is None else str(item).split(","):
            text = text.strip()
            if text == ALL_TAPS:
                sets += [(tap,) for tap in depth_order(available)]
            else:  # one set, or ALL_JOINED
                sets.append(parse_tap_set(text, available, where, store))
    if not sets:
        raise UserInputError(f"{where} is empty; give e.g. all, or pool,blocks.14+pool")
    return list(dict.fromkeys(sets))


def depth_order(taps: Sequence[str]) -> list[str]:
    """A store's taps from shallow to deep: the others in store order, then the first.

    Registry exports store their final tap first (the store's default tap), then the
    intermediate taps from shallow to deep (``pool, blocks.4, .., blocks.15``), so this is
    their depth order; for other stores it is the store's order with the default tap last.

    Examples
    --------
    >>> depth_order(["pool", "blocks.4", "blocks.15"])
    ['blocks.4', 'blocks.15', 'pool']
    """
    return [*taps[1:], *taps[:1]]


@dataclass(frozen=True)
class TapJoin:
    """Joins several taps into one row: standardise each, scale by 1/sqrt(width), concat.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(5, 3, (100, 4)), rng.normal(0, 1, (100, 64))
    >>> join = TapJoin.fit(("a", "b"), [a, b])
    >>> X = join.transform([a, b])  # (100, 4 + 64)
    >>> [round(float((part**2).sum(1).mean()), 3) for part in (X[:, :4], X[:, 4:])]
    [1.0, 1.0]
    """

    taps: tuple[str, ...]  # in the order they are concatenated
    mean: tuple[np.ndarray, ...]  # per tap (D_i,): the training mean
    scale: tuple[np.ndarray, ...]  # per tap (D_i,): 1 / (std * sqrt(D_i)); std < 1e-6 counts as 1

    @classmethod
    def fit(cls, taps: Sequence[str], parts: Sequence[np.ndarray]) -> TapJoin:
        """Statistics of each tap's training rows ``parts[i]`` (N, ...)."""
        means, scales = [], []
        for part in parts:
            X = _rows(part).astype(np.float64)  # (N, D_i)
            std = X.std(axis=0)
            std[std < _MIN_STD] = 1.0
            means.append(X.mean(axis=0).astype(np.float32))
            scales.append((1.0 / (std * np.sqrt(X.shape[1]))).astype(np.float32))
        return cls(tuple(taps), tuple(means), tuple(scales))

    def transform(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, sum of widths)`` float32: each part standardised, scaled, concatenated."""
        if len(parts) != len(self.taps):
            raise UserInputError(f"expected {len(self.taps)} taps ({tap_set_name(self.taps)})")
        out = []
        for tap, part, mean, scale in zip(self.taps, parts, self.mean, self.scale):
            X = _rows(part)
            if X.shape[1] != len(mean):
                raise UserInputError(
                    f"tap {tap!r} has {X.shape[1]} features per item; the head was trained "
                    f"on {len(mean)}"
                )
            out.append((X - mean) * scale)
        return np.concatenate(out, axis=1).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        """JSON-able: ``{"method", "taps", "mean", "scale"}`` (lists of floats per tap)."""
        return {
            "method": "standardize, then 1/sqrt(width) per tap; concatenate",
            "taps": list(self.taps),
            "mean": [m.tolist() for m in self.mean],
            "scale": [s.tolist() for s in self.scale],
        }

    @classmethod
    def from_dict(cls, d: dict) -> TapJoin:
        as_arrays = lambda key: tuple(np.asarray(v, dtype=np.float32) for v in d[key])  # noqa: E731
        return cls(tuple(d["taps"]), as_arrays("mean"), as_arrays("scale"))


def read_taps(fs, taps: Sequence[str], rows=None, *, join: TapJoin | None = None,
              flatten: bool = True) -> np.ndarray:  # fmt: skip
    """Features of a tap set for ``rows``: one tap as stored, several through ``join``.

    One tap is flattened to ``(N, D)`` when ``flatten`` (maps ``(N, C, H, W)`` stay whole
    otherwise); several taps need their fitted :class:`TapJoin`.
    """
    if len(taps) == 1:
        X = fs.features(taps[0], rows=rows)
        return _rows(X) if flatten else X
    if join is None:
        raise UserInputError(f"tap set {tap_set_name(taps)!r} needs its TapJoin statistics")
    return join.transform([fs.features(tap, rows=rows) for tap in taps])


def read_joined(fs, taps: Sequence[str], fit_rows, *row_sets, flatten: bool = True) -> tuple:
    """``(join, [features of each of row_sets])``: taps joined by ``fit_rows``' statistics.

    ``join`` is None for one tap (read as stored, see :func:`read_taps`). The fit rows are
    read once: a row set that *is* ``fit_rows`` reuses them.
    """
    if not taps[1:]:
        return None, [read_taps(fs, taps, rows, flatten=flatten) for rows in row_sets]
    fitted = [fs.features(t, rows=fit_rows) for t in taps]
    join = TapJoin.fit(taps, fitted)
    return join, [
        join.transform(fitted) if rows is fit_rows else read_taps(fs, taps, rows, join=join)
        for rows in row_sets
    ]


def loop_taps(fs, rows, tap: str | None = None) -> tuple[str, ...]:
    """The taps the labelling loop reads: ``select``, ``bench --labelling``, semi heads' ``train``.

    ``tap`` when given; by default the store's default tap joined with each other vector
    tap whose rows' 10 nearest neighbours share at least :data:`AGREE` with the default
    tap's (on at most 2,000 of ``rows``; no labels). docs/labelling.md has the figures.
    """
    from embedkit.heads.graph import knn, unit_rows

    if tap is not None:
        return parse_tap_set(tap, fs.taps, store=fs.path)
    others = [t for t in fs.taps[1:] if len(fs.tap_info(t).shape) == 1]  # vectors, not maps
    if not others or len(rows) <= _AGREE_K:
        return (fs.default_tap,)
    sample = np.sort(np.random.default_rng(0).choice(rows, min(len(rows), _AGREE_ROWS), False))

    def near(t: str) -> np.ndarray:  # (S, k) each sampled row's nearest neighbours
        return knn(unit_rows(fs.features(t, rows=sample), center=True), _AGREE_K)[1]

    first = near(fs.default_tap)[:, :, None]  # (S, k, 1)
    keep = {t for t in others if (first == near(t)[:, None, :]).any(2).mean() >= AGREE}
    return tuple(t for t in depth_order(fs.taps) if t in keep or t == fs.default_tap)


def _rows(X: np.ndarray) -> np.ndarray:
    return X if X.ndim == 2 else X.reshape(len(X), -1)
