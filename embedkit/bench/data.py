"""The data a bench runs on, loaded once, and the row samplers of its protocols.

    embedkit bench stores/fmnist-lite0.h5 --shots 1,4,16,all --out bench/

:func:`load_bench_data` reads one tap set of a feature store into memory (float32;
:func:`load_bench_sets` several, for ``--taps``), drops unlabelled rows and the ids of
``--exclude`` from the training pool, and fixes the ONE test split. The samplers below
only ever see the training pool, so no protocol can train or tune on a test row:
:func:`kshot_indices` (k rows per class, nested across k), :func:`cv_folds`,
:func:`carve_validation` (the sweep's validation rows) and :func:`cv_holdout` (the folds
of the cross-validation that picks the recommended pair, :mod:`embedkit.bench.choose`).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from embedkit.errors import UserInputError
from embedkit.heads.rows import select_rows
from embedkit.heads.tapsets import TapJoin, parse_tap_sets, tap_set_name
from embedkit.heads.train_record import class_name
from embedkit.rows import read_ids_file
from embedkit.rows.splits import stratified_split
from embedkit.store import FeatureStore

ALL = "all"  # the shot level that trains on every row of the training pool


@dataclass(frozen=True)
class BenchData:
    """Features and labels held in memory, with the training pool and test rows fixed.

    Examples
    --------
    >>> X = np.zeros((6, 2), np.float32); y = np.array([0, 0, 0, 1, 1, 1])
    >>> data = BenchData(X, y, train=np.array([0, 1, 3, 4]), test=np.array([2, 5]))
    >>> data.class_counts().tolist()
    [2, 2]
    """

    X: np.ndarray  # (N, D...) float32, every row of the store that has a label
    y: np.ndarray  # (N,) int64 class index into label_names
    train: np.ndarray  # row indices of the training pool (sorted)
    test: np.ndarray  # row indices of the fixed test split (sorted; may be empty for cv)
    label_names: tuple[str, ...] = ()  # class names; empty means "0", "1", ...
    source: dict = field(default_factory=dict)  # path, tap, fingerprint: what the runs record

    @property
    def tap(self) -> str:
        """The tap set's name (``source["tap"]``; "features" for data built by hand)."""
        return str(self.source.get("tap") or "features")

    @property
    def n_classes(self) -> int:
        return int(max(len(self.label_names), int(self.y.max()) + 1 if len(self.y) else 0))

    def class_counts(self) -> np.ndarray:
        """Rows per class in the training pool."""
        return np.bincount(self.y[self.train], minlength=self.n_classes)


def parse_shots(text: str | list) -> tuple[int | str, ...]:
    """Parse ``"1,2,4,all"`` into ``(1, 2, 4, "all")``.

    Examples
    --------
    >>> parse_shots("1,4, all")
    (1, 4, 'all')
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    shots: list[int | str] = []
    for item in items:
        item = str(item).strip().lower()
        if item != ALL and not (item.isdigit() and int(item) > 0):
            raise UserInputError(
                f"--shots item {item!r} is not valid; use positive integers or 'all' (e.g. 1,4,all)"
            )
        shots.append(item if item == ALL else int(item))
    if not shots:
        raise UserInputError("--shots is empty; give e.g. 1,2,4,8,16,all")
    return tuple(dict.fromkeys(shots))


def shot_rank(shots) -> float:
    """Sort key of a shot level: ``all`` after every number."""
    return float("inf") if shots == ALL else float(shots)


def check_shots(data: BenchData, shots: tuple[int | str, ...], *, allow_fewer: bool) -> None:
    """Raise when a shot level asks for more rows than a class has in the training pool."""
    counts = data.class_counts()
    for c in np.flatnonzero(counts == 0):
        if c < len(data.label_names):
            raise UserInputError(
                f"class {class_name(c, data.label_names)!r} has no labelled training rows; "
                "add some, or drop the class from the store"
            )
    if allow_fewer:
        return
    wanted = max((k for k in shots if k != ALL), default=0)
    short = [(class_name(c, data.label_names), int(n)) for c, n in enumerate(counts) if n < wanted]
    if short:
        name, count = min(short, key=lambda item: item[1])
        raise UserInputError(
            f"--shots {wanted} asks for more rows than class {name!r} has in the training pool "
            f"({count}); lower --shots, use 'all', or pass --allow-fewer"
        )


def kshot_indices(y: np.ndarray, pool: np.ndarray, shots: int | str, seed: int) -> np.ndarray:
    """Pick ``shots`` rows per class from ``pool``, stratified and deterministic per seed.

    The sets are nested: for one seed, the ``k``-shot rows are the first ``k`` rows of a
    per-class permutation that does not depend on ``k``. A class with fewer rows gives all
    of them (the caller decides whether that is allowed). ``"all"`` returns the whole pool.

    Examples
    --------
    >>> y = np.array([0, 0, 0, 1, 1, 1, 1])
    >>> rows = kshot_indices(y, np.arange(7), 2, seed=0)
    >>> np.bincount(y[rows]).tolist()
    [2, 2]
    >>> set(kshot_indices(y, np.arange(7), 1, seed=0)) <= set(rows)
    True
    """
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    if shots == ALL:
        return pool
    picked = []
    for c in np.unique(y[pool]):
        members = pool[y[pool] == c]
        rng = np.random.default_rng([int(seed), int(c)])
        picked.append(members[rng.permutation(len(members))[: int(shots)]])
    return np.sort(np.concatenate(picked)) if picked else pool[:0]


def cv_folds(
    y: np.ndarray, pool: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``folds``-fold split of ``pool``: a list of (train rows, held-out rows).

    Examples
    --------
    >>> y = np.array([0, 1] * 5)
    >>> [len(held) for _, held in cv_folds(y, np.arange(10), 5, seed=0)]
    [2, 2, 2, 2, 2]
    """
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    counts = np.bincount(y[pool])
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    if folds < 2 or smallest < folds:
        raise UserInputError(
            f"--folds {folds} needs at least {max(folds, 2)} rows in every class, and the "
            f"smallest class has {smallest}; lower --folds (2 or more)"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(pool[tr], pool[te]) for tr, te in splitter.split(pool, y[pool])]


def carve_validation(
    y: np.ndarray, rows: np.ndarray, seed: int, fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray] | None:
    """Split one run's training ``rows`` into (fit rows, validation rows), stratified.

    Validation gets ``fraction`` of the rows, and at least one row per class. Returns
    ``None`` when some class has fewer than two rows (1-shot), so no validation set can
    be carved without leaving a class out.

    Examples
    --------
    >>> y = np.array([0] * 4 + [1] * 4)
    >>> fit, val = carve_validation(y, np.arange(8), seed=0)
    >>> len(fit), len(val), sorted(set(fit) & set(val))
    (6, 2, [])
    """
    classes, counts = np.unique(y[rows], return_counts=True)
    if counts.min() < 2:
        return None
    n_val = max(len(classes), round(fraction * len(rows)))
    return stratified_split(rows, y[rows], n_val, seed=seed)


def cv_holdout(
    y: np.ndarray, rows: np.ndarray, seed: int, fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray] | None:
    """Seed ``seed``'s part of a repeated stratified cross-validation of ``rows``.

    With ``F = round(1 / fraction)`` folds, seed ``s`` holds out fold ``s mod F`` of the
    stratified ``F``-fold split number ``s // F`` (shuffled with that number): seeds
    0..F-1 together are one full F-fold cross-validation (every row held out once), the
    next F seeds a second, reshuffled one, and so on. This is how ``bench`` scores each
    (tap set, head) pair at the largest shot level, for the same cost as one validation
    split per seed. A class with fewer than ``F`` rows falls back to
    :func:`carve_validation`; under two rows, None.

    Examples
    --------
    >>> y = np.array([0] * 10 + [1] * 10)
    >>> held = [cv_holdout(y, np.arange(20), s, 0.2)[1] for s in range(5)]
    >>> sorted(np.concatenate(held).tolist()) == list(range(20))  # one full 5-fold CV
    True
    """
    folds = max(2, round(1 / fraction))
    if np.unique(y[rows], return_counts=True)[1].min() < folds:
        return carve_validation(y, rows, seed, fraction)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed) // folds)
    fit, held = list(splitter.split(rows, y[rows]))[int(seed) % folds]
    return np.sort(rows[fit]), np.sort(rows[held])


def load_bench_data(
    store,
    *,
    tap: str | None = None,
    exclude: str | Path | None = None,
    make_test_split: float | None = None,
    require_test: bool = True,
) -> BenchData:
    """Read one tap set of a feature store into memory; fix the training pool and test rows.

    Parameters
    ----------
    store : str, Path or FeatureStore
        The feature store (an open :class:`~embedkit.store.FeatureStore` is read, not closed).
    tap : str, optional
        The tap to bench, or taps joined with ``+`` (``"blocks.14+pool"``, see
        :mod:`embedkit.heads.tapsets`); the store's default tap by default.
    exclude : path, optional
        A file of row ids, one a line, left out of the training pool (for example the
        label errors that ``embedkit audit`` found). The test split is unchanged, so the
        results stay comparable with a bench without ``exclude``.
    make_test_split : float, optional
        Hold out this fraction of the labelled rows (stratified, seed 0) as the test split
        in memory, instead of the store's ``test`` split.
    require_test : bool
        Raise when there is no test split (the k-shot protocol needs one; cv does not).

    Examples
    --------
    >>> data = load_bench_data("stores/fmnist-lite0.h5")  # doctest: +SKIP
    >>> len(data.train), len(data.test)  # doctest: +SKIP
    (3000, 1000)
    """
    taps = [tap] if tap and "," not in tap else tap  # one set; "a,b" is refused below
    sets = load_bench_sets(store, taps=taps, exclude=exclude, make_test_split=make_test_split,
                           require_test=require_test)  # fmt: skip
    if len(sets) != 1:
        raise UserInputError(f"--tap {tap!r} names {len(sets)} tap sets; give one (a or a+b)")
    return sets[0]


def load_bench_sets(
    store,
    *,
    taps=None,
    exclude: str | Path | None = None,
    make_test_split: float | None = None,
    require_test: bool = True,
) -> list[BenchData]:
    """One :class:`BenchData` per tap set of ``taps``, sharing labels, pool and test rows.

    ``taps`` is None (the store's default tap), ``"all"``, ``"a,b,c"``, ``"a+b"`` or a list
    of those (:func:`embedkit.heads.tapsets.parse_tap_sets`). Joined taps are standardised
    with statistics of the training pool (labelled rows that are not test), never the test
    rows. The other arguments are those of :func:`load_bench_data`.

    Examples
    --------
    >>> sets = load_bench_sets("stores/fmnist-lite0.h5", taps="all")  # doctest: +SKIP
    >>> [d.source["tap"] for d in sets]  # doctest: +SKIP
    ['blocks.4', 'blocks.7', 'blocks.10', 'blocks.14', 'blocks.15', 'pool']
    """
    own = not isinstance(store, FeatureStore)
    with FeatureStore(str(store)) if own else contextlib.nullcontext(store) as fs:
        path = str(fs.path)
        sets = [(fs.default_tap,)] if taps is None else parse_tap_sets(taps, fs.taps, store=path)
        if not fs.has_labels:
            raise UserInputError(
                f"store {path} has no labels; extract with labels (e.g. class folders or a label "
                "column), or bench a store that has them"
            )
        labels = np.asarray(fs.labels(), dtype=np.int64)
        labelled = np.flatnonzero(labels >= 0)
        y, ids = labels[labelled], np.asarray(fs.ids()).astype(str)[labelled]
        wanted = read_ids_file(exclude) if exclude else set()
        # The one selector of train, bench and audit (docs/splits.md); bench carves its own
        # validation from the pool, so excluded ids leave all of it.
        chosen = select_rows(fs, exclude=wanted, exclude_val=True, source=f"--exclude {exclude}")
        if make_test_split:  # a stratified test split in memory, seed 0
            if not 0.0 < make_test_split < 1.0:
                raise UserInputError(
                    f"--make-test-split {make_test_split} is not valid; give a fraction in (0, 1)"
                )
            pool, test = stratified_split(np.arange(len(y)), y, float(make_test_split), seed=0)
            pool = pool[~np.isin(ids[pool], sorted(wanted))]
        else:
            test = np.searchsorted(labelled, chosen.test)  # store rows -> rows of y
            pool = np.searchsorted(labelled, chosen.pool)
            if require_test and len(test) == 0:
                raise UserInputError(
                    f"store {path} has no test split; run `embedkit split {path} --test 0.2`, "
                    "or pass --make-test-split 0.2 to split in memory"
                )
        out = []
        for taps_ in sets:
            parts = [fs.features(tap=t, dtype=np.float32) for t in taps_]  # (N, D...) one read each
            parts = [X[labelled] if len(labelled) < len(X) else X for X in parts]
            join = TapJoin.fit(taps_, [X[pool] for X in parts]) if len(taps_) > 1 else None
            X = join.transform(parts) if join else parts[0]
            source = {
                "store": path,
                "tap": tap_set_name(taps_),
                "shape": list(X.shape[1:]),
                "backbone_sha256": str(fs.provenance.get("backbone_sha256", "")),
                "default_tap": fs.default_tap,  # the final layer of a registry export
                "digest": _digest(X, y, pool, test),
                "exclude": str(exclude) if exclude else None,
                "make_test_split": make_test_split,
            }
            out.append(BenchData(X, y, pool, test, tuple(fs.label_names), source))
        return out


def _digest(X: np.ndarray, y: np.ndarray, pool: np.ndarray, test: np.ndarray) -> str:
    """A cheap content hash: labels, both row sets and a sample of feature rows."""
    h = hashlib.sha1()
    step = max(1, len(X) // 512)
    for part in (y, pool, test, np.ascontiguousarray(X[::step])):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()[:16]
