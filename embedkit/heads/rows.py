"""Which rows a head trains, validates and is tested on: the one selector.

    embedkit train feats.h5 --head logreg --exclude audit/suspects.csv --out head/
    embedkit bench feats.h5 --exclude audit/suspects.csv --out bench/

``train`` and ``bench`` (``--labelling`` too) select rows here, by the split rule of
docs/splits.md: rows marked test are test (kept whole: ``--exclude`` never touches
them); rows marked val are val; rows marked train and unset rows are training rows;
validation is carved from the training rows when asked. Unlabelled rows (label -1)
leave every part. ``--exclude`` ids leave the training rows; by default they stay in
the validation rows, so a validation score is measured on the same rows with and
without ``--exclude`` (``exclude_val=True`` drops them there too). ``audit`` checks
every labelled row, test rows included, and names the part each row plays by the same
rule (:func:`embedkit.rows.splits.split_roles`).

Examples
--------
>>> import numpy as np, tempfile, os
>>> from embedkit.store import FeatureStore
>>> from embedkit.rows import from_arrays
>>> X = np.eye(6, dtype="float32"); y = [0, 1, 0, 1, 0, 1]
>>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
>>> from_arrays(path, X, y, splits=["", "", "", "", "test", "test"]).close()
>>> with FeatureStore(path) as fs:
...     rows = select_rows(fs, val=0.0)
>>> rows.train.tolist(), rows.test.tolist()
([0, 1, 2, 3], [4, 5])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from embedkit.rows import check_known_ids, split_rows


@dataclass(frozen=True)
class RowSelection:
    """Row indices of a store (sorted int64) and what ``--exclude`` did."""

    train: np.ndarray  # labelled training rows minus the excluded ids: what a head fits on
    val: np.ndarray  # labelled validation rows (stored val, or carved from training rows)
    test: np.ndarray  # labelled test rows, whole
    excluded_train: int = 0  # excluded ids that left the training rows
    excluded_val_kept: int = 0  # excluded ids that stayed in the validation rows
    excluded_val_dropped: int = 0  # ... or left them (exclude_val=True)
    unlabelled: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # training
    #   rows without a label (minus the excluded ids): what a semi-supervised head also reads

    @property
    def pool(self) -> np.ndarray:
        """Every labelled non-test row left after ``--exclude``: train and val together."""
        return np.union1d(self.train, self.val)

    def exclude_note(self) -> str | None:
        """One line on what ``--exclude`` did, or None when it did nothing."""
        if not (self.excluded_train or self.excluded_val_kept or self.excluded_val_dropped):
            return None
        note = f"--exclude: {self.excluded_train} training rows left out"
        if self.excluded_val_kept:
            note += (
                f"; {self.excluded_val_kept} validation rows kept (validation scores stay "
                "comparable with a run without --exclude)"
            )
        if self.excluded_val_dropped:
            note += f"; {self.excluded_val_dropped} validation rows left out too"
        return note + "; test rows are never excluded"


def select_rows(
    fs,
    *,
    val: float = 0.0,
    test: float = 0.0,
    seed: int = 0,
    exclude: Iterable[str] | None = None,
    exclude_val: bool = False,
    source: str = "--exclude",
) -> RowSelection:
    """Select a store's training, validation and test rows by the one split rule.

    Parameters
    ----------
    fs : FeatureStore
        An open store (labels are needed only to drop unlabelled rows).
    val : float
        Where the store has no val rows, carve this fraction of the training rows
        (stratified) as validation; 0: no validation rows.
    test : float
        Where the store has no test rows, hold out this fraction of all rows (in memory,
        nothing is written); 0: no test rows.
    seed : int
        Seed of the carved parts.
    exclude : iterable of str, optional
        Ids left out of the training rows (an unknown id raises: a typo excludes nothing).
    exclude_val : bool
        Also leave the excluded ids out of the validation rows.
    source : str
        How the error of an unknown id names the exclude list.
    """
    parts = split_rows(fs, val=val, test=test, seed=seed)
    labels = fs.labels() if fs.has_labels else np.full(len(fs), -1)
    labelled = labels >= 0
    excluded = np.zeros(len(labels), dtype=bool)
    wanted = set(exclude or ())
    if wanted:
        ids = fs.ids()
        check_known_ids(wanted, ids, fs.path, source)
        excluded = np.isin(np.asarray(ids).astype(str), sorted(wanted))
    train, val_rows, test_rows = parts["train"], parts["val"], parts["test"]
    ex_val = int((excluded[val_rows] & labelled[val_rows]).sum())
    return RowSelection(
        train=train[labelled[train] & ~excluded[train]],
        val=val_rows[labelled[val_rows] & ~(excluded[val_rows] & exclude_val)],
        test=test_rows[labelled[test_rows]],
        excluded_train=int((excluded[train] & labelled[train]).sum()),
        excluded_val_kept=0 if exclude_val else ex_val,
        excluded_val_dropped=ex_val if exclude_val else 0,
        unlabelled=train[~labelled[train] & ~excluded[train]],
    )
