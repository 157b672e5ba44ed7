"""Reading a store's index file: which shard rows make up the store, plus the per-row columns.

``feats.h5`` (the view of the newest version) and ``feats.h5.d/`` (versions, shards, column
files) together are a store; see docs/store-format.md. Older layouts are refused here and
read by ``store upgrade`` only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError
from embedkit.store import format as S
from embedkit.store.files.columns import Piece, read_columns
from embedkit.store.files.integrity import check_not_orphaned
from embedkit.store.files.shards import read_shard
from embedkit.store.read.checks import check_index, old_layout
from embedkit.store.read.idindex import IdIndex
from embedkit.store.read.rowchecks import check_rows


@dataclass
class State:
    """One snapshot of a store, as its index file describes it."""

    fingerprint: S.Fingerprint
    shards: list[str]  # shard file names ("" = the file itself: an older one-file layout)
    segments: np.ndarray  # (M, 4) int64: shard, src row, dst row, length; sorted by dst
    labels: np.ndarray  # (N,) int64 index into label_names, -1 unlabelled
    split: np.ndarray  # (N,) S8
    label_names: list[str]
    bad: dict[str, dict] = field(default_factory=dict)  # id -> {"id", "digest", "reason"}
    attrs: dict = field(default_factory=dict)  # root attributes, text values decoded
    # column files holding labels and split ((name, rows) in row order); None when the
    # index holds them itself (an older layout, read by store upgrade only)
    pieces: list[Piece] | None = None
    id_index: IdIndex | None = field(default=None, repr=False, compare=False)  # set on open

    @property
    def n(self) -> int:
        return len(self.labels)

    def rows_of(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-row ``(shard, src_row)`` arrays, each (N,)."""
        seg = self.segments
        shard = np.repeat(seg[:, 0], seg[:, 3])
        starts = np.repeat(seg[:, 1] - seg[:, 2], seg[:, 3])
        return shard, starts + np.arange(self.n, dtype=np.int64)

    def gather(self, per_shard) -> np.ndarray:
        """One value per row: ``per_shard[k]`` (shard ``k``'s rows) cut and joined in row order."""
        parts = [per_shard[k][src : src + n] for k, src, _, n in self.segments.tolist()]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=object)


def segments_of(shard: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Run-length encode per-row ``(shard, src)`` into (M, 4) segments."""
    n = len(shard)
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64)
    brk = np.flatnonzero((np.diff(shard) != 0) | (np.diff(src) != 1)) + 1
    starts = np.concatenate([[0], brk])
    lengths = np.diff(np.concatenate([starts, [n]]))
    return np.stack([shard[starts], src[starts], starts, lengths], axis=1).astype(np.int64)


def extend_segments(seg: np.ndarray, shard: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``segments_of`` of the rows in ``seg`` followed by rows ``(shard, src)``, in O(new rows)."""
    tail = segments_of(shard, src)
    if not len(seg):
        return tail
    tail[:, 2] += seg[-1, 2] + seg[-1, 3]
    if len(tail) and tail[0, 0] == seg[-1, 0] and tail[0, 1] == seg[-1, 1] + seg[-1, 3]:
        seg = seg.copy()
        seg[-1, 3] += tail[0, 3]  # the first new rows continue the last run
        tail = tail[1:]
    return np.concatenate([seg, tail]).astype(np.int64)


def read_state(f: h5py.File, path) -> State:
    """The snapshot described by the open index ``f``; an older layout is refused.

    Only ``embedkit store upgrade`` (:mod:`embedkit.store.maintain.upgrade`) reads the
    older layouts (schema 1, packed, schema 2 before column files).
    """
    check_index(f, path)  # attributes, datasets and lengths, before anything is read
    layout = old_layout(f)
    if layout is not None:
        raise StoreError(
            f"{path}: {layout}, an older layout that this embedkit reads only to convert it; "
            f"run `embedkit store upgrade {path}`"
        )
    shards = [S.as_text(v) for v in f[f"{S.META}/shards"][:]]
    segments = f[f"{S.META}/rowmap"][:].astype(np.int64).reshape(-1, 4)
    labels, split, pieces = _read_columns(f, path, int(f[S.LABELS].shape[0]))
    return State(shards=shards, segments=segments, labels=labels, split=split, pieces=pieces,
                 **index_parts(f))  # fmt: skip


def index_parts(f: h5py.File) -> dict:
    """What every layout's index holds alike: fingerprint, class names, bad items, attributes."""
    bad = ([S.as_text(v) for v in f[f"{S.BAD}/{k}"][:]] for k in ("ids", "digests", "reasons"))
    # Schema 1 -> 2 changed the layout only: v1 rows are valid schema-2 rows.
    return {
        "fingerprint": replace(S.Fingerprint.from_attrs(f.attrs), schema_version=S.SCHEMA_VERSION),
        "label_names": [S.as_text(v) for v in f[S.LABEL_NAMES][:]],
        "bad": {i: {"id": i, "digest": d, "reason": r} for i, d, r in zip(*bad)},
        "attrs": {k: S.as_text(v) for k, v in f.attrs.items()},
    }


def _read_columns(f: h5py.File, path, n: int):
    """``(labels, split, pieces)`` from the column files the index maps (read directly, not
    through the virtual datasets, so a missing file is an error and not fill values). A
    real ``labels`` or ``split`` dataset in the index (a changed index) is what is read,
    so its values are checked and refused like the rest of the index."""
    virtual = {name: f[name].is_virtual for name in (S.LABELS, S.SPLIT)}
    if not any(virtual.values()):
        return f[S.LABELS][:].astype(np.int64), f[S.SPLIT][:].astype("S8"), None
    names = [S.as_text(v) for v in f[f"{S.META}/columns"][:]]
    labels, split, pieces = read_columns(path, names)
    if len(labels) != n:
        raise StoreError(
            f"{path}: /{S.META}/columns hold {len(labels)} rows but /labels has {n}; "
            "re-run extract or restore the store"
        )
    if not virtual[S.LABELS]:  # the index's own dataset wins where it has one
        labels = f[S.LABELS][:].astype(np.int64)
    if not virtual[S.SPLIT]:
        split = f[S.SPLIT][:].astype("S8")
    return labels, split, pieces if all(virtual.values()) else None


def load_state(path) -> State | None:
    """Read the state of the store at ``path``; None when there is no store yet.

    A missing index whose folder still holds rows (an orphaned folder) is a StoreError
    naming the folder and ``embedkit store recover``: no writer starts a new store over it.
    """
    path = Path(path)
    if not path.exists():
        check_not_orphaned(path)
        return None
    with open_index(path, hint="; choose another --out or remove it") as f:
        state = read_state(f, path)
        check_rows(path, state, keep_ids=True)
        return state


def open_index(path, source=None, *, hint: str = "") -> h5py.File:
    """Open the index file ``path`` (or ``source``, one of its versions) read-only; a file
    that h5py cannot open is a one-line :class:`StoreError` ending in ``hint``."""
    try:
        return h5py.File(path if source is None else source, "r")
    except OSError as exc:
        reason = "a folder" if Path(path).is_dir() else str(exc).splitlines()[0][:120]
        raise StoreError(f"{path}: not a readable HDF5 file ({reason}){hint}") from None


def read_array(store, state: State, read) -> np.ndarray:
    """``read(shard)`` of each shard, cut and joined in row order: one value per row."""
    used = np.unique(state.segments[:, 0]).tolist()
    return state.gather({k: read_shard(store, state.shards[k], read) for k in used})


def store_nbytes(store: Path, state: State | None) -> int:
    """Bytes of the index plus the shards the state refers to."""
    if state is None or not store.exists():
        return 0
    total = store.stat().st_size
    files = [S.shard_path(store, name) for name in state.shards]
    files += [S.column_dir(store) / name for name, _ in dict(state.pieces or []).items()]
    for path in files:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total
