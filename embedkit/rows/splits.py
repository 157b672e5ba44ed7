"""Stratified splitting: the one way embedkit carves a set of rows into two parts.

    embedkit split feats.h5 --test 0.2 --val 0.1

Used by ``FeatureStore.split`` (train/val/test), the torch heads' validation hold-out,
and the bench's validation part and in-memory test split. :func:`split_roles` is the one
split rule (docs/splits.md): a row marked test is test, a row marked val is val, and a
row marked train or left unset is a training row.
"""

from __future__ import annotations

import math

import numpy as np

from embedkit.errors import UserInputError


def stratified_split(
    rows, labels, size: int | float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into ``(kept, taken)``, ``size`` rows taken, stratified by ``labels``.

    The split is stratified when every class can give a row and keep one (each class has
    two or more rows, and each part has room for one row per class); otherwise, and when
    ``labels`` is None, it is a plain random split. The same ``seed`` gives the same split.

    Parameters
    ----------
    rows : array-like of int
        The rows to split.
    labels : array-like, optional
        One label per row of ``rows`` (not per row of the store).
    size : int or float
        How many rows to take, or the fraction of ``rows`` (rounded up, as in scikit-learn).
    seed : int
        Seeds the split.

    Returns
    -------
    kept, taken : ndarray
        The two parts, each sorted.

    Examples
    --------
    >>> kept, taken = stratified_split(np.arange(8), [0, 0, 0, 0, 1, 1, 1, 1], 2, seed=0)
    >>> len(kept), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[taken].tolist())
    (6, [0, 1])
    """
    from sklearn.model_selection import train_test_split

    rows = np.asarray(rows)
    n_take = int(size) if isinstance(size, int | np.integer) else math.ceil(size * len(rows))
    if not 0 < n_take < len(rows):
        raise UserInputError(f"cannot take {n_take} of {len(rows)} rows; take between 1 and n-1")
    stratify = None
    if labels is not None:
        _, counts = np.unique(np.asarray(labels), return_counts=True)
        fits = counts.min() >= 2 and len(counts) <= n_take <= len(rows) - len(counts)
        stratify = np.asarray(labels) if fits else None
    kept, taken = train_test_split(rows, test_size=size, random_state=seed, stratify=stratify)
    return np.sort(kept), np.sort(taken)


def check_fractions(**fractions: float) -> None:
    """Raise unless every split fraction is in [0, 1) and together they leave train rows.

    Examples
    --------
    >>> check_fractions(test=0.5, val=0.6)
    Traceback (most recent call last):
    ...
    embedkit.errors.UserInputError: split fractions --test 0.5 and --val 0.6 add up to 1.1; \
their sum must be below 1 to leave train rows
    """
    for name, value in fractions.items():
        if not 0 <= value < 1:
            raise UserInputError(f"split fraction --{name} {value} is not in [0, 1)")
    total = sum(fractions.values())
    if total >= 1:
        given = " and ".join(f"--{k} {v}" for k, v in fractions.items())
        raise UserInputError(
            f"split fractions {given} add up to {total:g}; their sum must be below 1 "
            "to leave train rows"
        )


def split_roles(stored) -> np.ndarray:
    """The part each row plays under the one split rule: unset rows (``""``) are train.

    Examples
    --------
    >>> split_roles(["", "test", "val", "train"]).tolist()
    ['train', 'test', 'val', 'train']
    """
    stored = np.asarray(stored).astype(str)
    return np.where(stored == "", "train", stored)


def split_rows(
    fs,
    *,
    val: float = 0.1,
    test: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    use_stored: bool | str = True,
) -> dict[str, np.ndarray]:
    """Row indices of a train/val/test split of the store ``fs``, by the one split rule.

    Rows marked test are test; rows marked val are val; rows marked train AND unset
    rows are train (unless ``use_stored=False``, which treats every row as unset). A
    missing test part is ``test`` of all rows; a missing val part is ``val`` of the
    TRAIN rows (never of the test rows, which it leaves alone). Both are carved from
    the train rows, stratified by label when there are labels, with a fixed ``seed``:
    the same call gives the same split. ``use_stored="test"`` keeps only the stored test
    rows and redraws train and val from all the others (``embedkit split --force``).

    Parameters
    ----------
    fs : FeatureStore
        The open store.
    val, test : float
        Fractions carved when the store has no rows marked so.
    seed : int
        Seeds the carving.
    stratify : bool
        Keep class proportions when the store has labels.
    use_stored : bool or "test"
        Follow the stored split column (see above).

    Returns
    -------
    dict of str to ndarray
        ``{"train", "val", "test"}`` to sorted row indices.

    Examples
    --------
    >>> import tempfile, os
    >>> from embedkit.rows import from_arrays
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> with from_arrays(path, np.zeros((10, 2), np.float32), y=[0, 1] * 5) as fs:
    ...     parts = split_rows(fs, val=0.2, test=0.2)
    >>> {k: len(v) for k, v in parts.items()}
    {'train': 6, 'val': 2, 'test': 2}
    """
    check_fractions(test=test, val=val)
    roles = split_roles(fs.splits() if use_stored else np.full(len(fs), "", dtype=str))
    if use_stored == "test":
        roles = np.where(roles == "test", "test", "train")
    parts = {name: np.flatnonzero(roles == name) for name in ("train", "val", "test")}
    y = fs.labels() if fs.has_labels else None
    for name, frac in (("test", test), ("val", val)):
        if len(parts[name]) or frac <= 0:
            continue
        pool = parts["train"]
        total = len(roles) if name == "test" else len(pool)  # val: a fraction of train
        n_take = int(round(frac * total))
        if n_take <= 0 or n_take >= len(pool):
            continue
        labels = y[pool] if stratify and y is not None else None
        parts["train"], parts[name] = stratified_split(pool, labels, n_take, seed=seed)
    return parts
