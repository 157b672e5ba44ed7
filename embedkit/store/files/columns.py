"""The per-row columns that change (labels, split), in small immutable column files.

The index's ``labels`` and ``split`` are virtual datasets over ``STORE.d/columns/<hash>.h5``
files, listed in order in ``/_store/columns``. An append writes a file for its new rows
only; a change to existing rows writes one file for all rows; the newest files merge like
a binary counter, so a store keeps O(log N) of them (docs/store-format.md, "Why an index
file plus a folder").

    pieces = write_columns(store, labels, split, base=state)   # [(name, rows), ...]
    labels, split, pieces = read_columns(store, [name for name, _ in pieces])
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError, first_line
from embedkit.files import atomic_file
from embedkit.store import format as S
from embedkit.store.files.integrity import stamp
from embedkit.store.files.shards import check_free, disk_errors, missing_file

Piece = tuple[str, int]  # a column file's name and row count


def read_columns(store, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[Piece]]:
    """``(labels, split, pieces)`` read from the column files ``names``, in order.

    A missing or damaged file is a one-line StoreError (commits never delete a file a
    version names, so a missing one is a store copied without its folder, or a vacuum).
    """
    labels, split, pieces = [np.zeros(0, np.int64)], [np.zeros(0, "S8")], []
    for name in names:
        path = S.column_dir(store) / name
        try:
            with h5py.File(path, "r") as f:
                y, s = f[S.LABELS][...], f[S.SPLIT][...]
        except (KeyError, OSError, TypeError) as exc:
            if isinstance(exc, FileNotFoundError) or not path.exists():
                raise StoreError(missing_file(store, path)) from None
            why = f"is not readable ({first_line(exc, 120)})"
            raise StoreError(f"{store}: column file {path} {why}; {S.RESTORE}") from None
        if y.ndim != 1 or y.dtype.kind not in "iu" or s.shape != y.shape or s.dtype.kind != "S":
            raise StoreError(
                f"{store}: column file {path} holds labels {y.shape} {y.dtype} and split "
                f"{s.shape} {s.dtype}, not (n,) int64 and (n,) S8; {S.RESTORE}"
            )
        labels.append(y.astype(np.int64, copy=False))
        split.append(s.astype("S8", copy=False))
        pieces.append((name, len(y)))
    return np.concatenate(labels), np.concatenate(split), pieces


def write_columns(store, labels: np.ndarray, split: np.ndarray, base=None) -> list[Piece]:
    """Column files holding ``labels`` and ``split`` (each (N,)); returns their pieces.

    ``base`` is the snapshot the new columns derive from (a ``State`` with ``n``,
    ``labels``, ``split`` and ``pieces``): when its rows are unchanged, its files are kept
    and only the rows after them are written.
    """
    spans: list[tuple[int, int, str | None]] = []  # (first row, end row, kept name)
    if base is not None and base.pieces is not None and _unchanged(base, labels, split):
        lo = 0
        for name, rows in base.pieces:
            spans.append((lo, lo + rows, name))
            lo += rows
    done = spans[-1][1] if spans else 0
    if done < len(labels):
        spans.append((done, len(labels), None))
    while len(spans) > 1 and spans[-2][1] - spans[-2][0] <= 2 * (spans[-1][1] - spans[-1][0]):
        last = spans.pop()
        spans[-1] = (spans[-1][0], last[1], None)  # merge the two newest files
    return [(name or _write(store, labels[lo:hi], split[lo:hi]), hi - lo) for lo, hi, name in spans]


def _unchanged(base, labels: np.ndarray, split: np.ndarray) -> bool:
    m = base.n
    if m > len(labels) or sum(rows for _, rows in base.pieces) != m:
        return False
    same_split = np.ascontiguousarray(split[:m], "S8").view(np.uint64)
    return np.array_equal(labels[:m], base.labels) and np.array_equal(
        same_split, np.ascontiguousarray(base.split, "S8").view(np.uint64)
    )


def _write(store, labels: np.ndarray, split: np.ndarray) -> str:
    """One column file, named by its content, written through ``atomic_file``."""
    labels = np.ascontiguousarray(labels, dtype="<i8")
    split = np.ascontiguousarray(split, dtype="S8")
    name = _content_name(labels, split)
    folder = S.column_dir(store)
    path = folder / name  # an existing file of this name is replaced: it may be damaged
    folder.mkdir(parents=True, exist_ok=True)
    needed = 16 * len(labels) + (64 << 10)
    with disk_errors(path, needed), atomic_file(path) as tmp:
        check_free(folder, needed, tmp)
        with h5py.File(tmp, "w", userblock_size=S.USERBLOCK) as f:
            f.create_dataset(S.LABELS, data=labels)
            f.create_dataset(S.SPLIT, data=split)
            f.attrs["format"] = S.COLUMN_FORMAT
        stamp(tmp)
    return name


def content_matches(path: Path) -> bool:
    """Whether the column file at ``path`` hashes to its name (``store verify``)."""
    with h5py.File(path, "r") as f:
        return path.name == _content_name(f[S.LABELS][...], f[S.SPLIT][...])


def _content_name(labels: np.ndarray, split: np.ndarray) -> str:
    labels = np.ascontiguousarray(labels, dtype="<i8").tobytes()
    split = np.ascontiguousarray(split, dtype="S8").tobytes()
    return hashlib.sha256(labels + b"\x00" + split).hexdigest()[:32] + ".h5"
