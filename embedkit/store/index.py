"""The store's index file: which shard rows make up the store, plus the per-row columns.

``feats.h5`` (the index, replaced atomically by every commit) and ``feats.h5.d/shards/``
(immutable shards) together are a schema-2 store; see docs/store-format.md. A v1 store or
a packed store is one self-contained file: its only shard is the file itself (name ``""``).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError
from embedkit.store import schema as S
from embedkit.store.checks import check_index
from embedkit.store.columns import Piece, column_dir, read_columns, write_columns
from embedkit.store.idindex import IdIndex
from embedkit.store.integrity import USERBLOCK, check_not_orphaned, keep_copy, stamp
from embedkit.store.rowchecks import check_rows
from embedkit.store.shards import disk_errors, fsync_path, open_shard

META = "_store"  # group: shards and columns (file names) and rowmap (segments)
SELF = ""  # shard name of a self-contained store: the index file itself


def sidecar(path) -> Path:
    """The folder beside a store that holds its shards, journal and lock."""
    return Path(f"{path}.d")


def shard_dir(path) -> Path:
    return sidecar(path) / "shards"


def shard_path(path, name: str) -> Path:
    return Path(path) if name == SELF else shard_dir(path) / name


@dataclass
class State:
    """One snapshot of a store, as its index file describes it."""

    fingerprint: S.Fingerprint
    shards: list[str]  # shard file names ("" = the index file itself)
    segments: np.ndarray  # (M, 4) int64: shard, src row, dst row, length; sorted by dst
    labels: np.ndarray  # (N,) int64 index into label_names, -1 unlabelled
    split: np.ndarray  # (N,) S8
    label_names: list[str]
    bad: dict[str, dict] = field(default_factory=dict)  # id -> {"id", "digest", "reason"}
    attrs: dict = field(default_factory=dict)  # root attributes, text values decoded
    # column files holding labels and split ((name, rows) in row order); None when the
    # index holds them itself (schema 1, packed, older schema-2 indexes)
    pieces: list[Piece] | None = None
    id_index: IdIndex | None = field(default=None, repr=False, compare=False)  # set on open

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def self_contained(self) -> bool:
        return self.shards == [SELF]

    def rows_of(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-row ``(shard, src_row)`` arrays, each (N,)."""
        seg = self.segments
        shard = np.repeat(seg[:, 0], seg[:, 3])
        starts = np.repeat(seg[:, 1] - seg[:, 2], seg[:, 3])
        return shard, starts + np.arange(self.n, dtype=np.int64)


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
    """The snapshot described by the open store file ``f`` (v1, packed or v2 index)."""
    check_index(f, path)  # attributes, datasets and lengths, before anything is read
    # Schema 1 -> 2 changed the layout only: v1 rows are valid schema-2 rows.
    fp = replace(S.Fingerprint.from_attrs(f.attrs), schema_version=S.SCHEMA_VERSION)
    n = int(f[S.LABELS].shape[0])
    if META in f:
        shards = [S.as_text(v) for v in f[f"{META}/shards"][:]]
        segments = f[f"{META}/rowmap"][:].astype(np.int64).reshape(-1, 4)
    else:  # schema 1: the file holds its rows
        shards = [SELF]
        segments = np.asarray([[0, 0, 0, n]] if n else np.zeros((0, 4)), dtype=np.int64)
    labels, split, pieces = _read_columns(f, path, n)
    bad_ids = [S.as_text(v) for v in f[f"{S.BAD}/ids"][:]]
    bad_digests = [S.as_text(v) for v in f[f"{S.BAD}/digests"][:]]
    reasons = [S.as_text(v) for v in f[f"{S.BAD}/reasons"][:]]
    return State(
        fingerprint=fp,
        shards=shards,
        segments=segments,
        labels=labels,
        split=split,
        label_names=[S.as_text(v) for v in f[S.LABEL_NAMES][:]],
        bad={
            i: {"id": i, "digest": d, "reason": r} for i, d, r in zip(bad_ids, bad_digests, reasons)
        },
        attrs={k: S.as_text(v) for k, v in f.attrs.items()},
        pieces=pieces,
    )


def _read_columns(f: h5py.File, path, n: int):
    """``(labels, split, pieces)``: from the column files where the index maps them
    (read directly, not through the virtual datasets, so a missing file is an error and
    not fill values), else from the index's own datasets."""
    virtual = {name: f[name].is_virtual for name in (S.LABELS, S.SPLIT)}
    if f"{META}/columns" not in f or not any(virtual.values()):
        return f[S.LABELS][:].astype(np.int64), f[S.SPLIT][:].astype("S8"), None
    names = [S.as_text(v) for v in f[f"{META}/columns"][:]]
    labels, split, pieces = read_columns(path, names)
    if len(labels) != n:
        raise StoreError(
            f"{path}: /{META}/columns hold {len(labels)} rows but /labels has {n}; "
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
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        reason = "a folder" if path.is_dir() else str(exc).splitlines()[0][:120]
        raise StoreError(
            f"{path}: exists but is not an HDF5 file ({reason}); choose another --out or remove it"
        ) from None
    with f:
        try:
            state = read_state(f, path)
        except FileNotFoundError as exc:  # under the writer lock: really missing
            raise StoreError(missing_file(path, Path(exc.filename))) from None
        check_rows(path, state, [f] if state.self_contained else None, keep_ids=True)
        return state


def write_index(path, state: State, shard_rows: dict[str, int], *, base: State | None = None):
    """Write ``state`` as the new index of the store at ``path``: tmp, fsync, rename.

    ``shard_rows`` gives each shard's row count (for the virtual datasets' sources).
    Labels and split go to column files first (``state.pieces`` is set to them): those of
    ``base``, the snapshot ``state`` was derived from, are kept where its rows are
    unchanged, so an append writes only its new rows' values. Column files of ``base``
    that the new index no longer names are removed once it is in place (a reader that
    still holds ``base`` retries on the newer snapshot).
    """
    path = Path(path)
    state.pieces = write_columns(path, state.labels, state.split, base) if state.n else []
    tmp = sidecar(path) / f"index.tmp-{os.getpid()}"
    needed = 200 * len(state.segments) + 100 * len(state.pieces) + (1 << 20)
    try:
        with disk_errors(tmp, needed):
            with h5py.File(tmp, "w", userblock_size=USERBLOCK) as f:
                _write_index_body(f, path, state, shard_rows)
            stamp(tmp)
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(path.parent)
            keep_copy(path)  # what `store recover` restores
    finally:
        if tmp.exists():
            tmp.unlink()
    kept = {name for name, _ in state.pieces}
    for name, _ in (base.pieces or []) if base is not None else []:
        if name not in kept:
            with contextlib.suppress(OSError):
                (column_dir(path) / name).unlink()


def _write_index_body(f: h5py.File, path: Path, state: State, shard_rows: dict[str, int]):
    text = h5py.string_dtype("utf-8")
    n, seg = state.n, state.segments
    rel = [f"{sidecar(path).name}/shards/{name}" for name in state.shards]
    taps = state.fingerprint.tap_infos
    columns = [(S.IDS, text, ()), (S.DIGESTS, "S64", ())]
    columns += [(f"{S.FEATURES}/{t.name}", t.dtype, t.shape) for t in taps]
    f.create_group(S.FEATURES)
    for name, dtype, shape in columns:
        layout = h5py.VirtualLayout(shape=(n, *shape), dtype=dtype)
        for k, src, dst, length in seg.tolist():
            rows = shard_rows[state.shards[k]]
            source = h5py.VirtualSource(rel[k], name, shape=(rows, *shape), dtype=dtype)
            layout[dst : dst + length] = source[src : src + length]
        f.create_virtual_dataset(name, layout)
    for t in taps:
        for key, value in t.to_dict().items():
            f[f"{S.FEATURES}/{t.name}"].attrs[key] = (
                json.dumps(value) if isinstance(value, list) else ("" if value is None else value)
            )
    pieces = state.pieces or []
    for name, dtype in ((S.LABELS, np.int64), (S.SPLIT, "S8")):
        if not pieces:
            f.create_dataset(name, shape=(0,), dtype=dtype)
            continue
        layout, dst = h5py.VirtualLayout(shape=(n,), dtype=dtype), 0
        for piece, rows in pieces:
            rel_piece = f"{sidecar(path).name}/columns/{piece}"
            source = h5py.VirtualSource(rel_piece, name, (rows,), dtype=dtype)
            layout[dst : dst + rows] = source[0:rows]
            dst += rows
        f.create_virtual_dataset(name, layout)
    f.create_dataset(S.LABEL_NAMES, data=np.asarray(state.label_names, dtype=object), dtype=text)
    write_bad(f, state.bad)
    meta = f.create_group(META)
    meta.create_dataset("shards", data=np.asarray(state.shards, dtype=object), dtype=text)
    meta.create_dataset("rowmap", data=seg.astype(np.int64).reshape(-1, 4))
    names = np.asarray([name for name, _ in pieces], dtype=object)
    meta.create_dataset("columns", shape=(len(pieces),), dtype=text, data=names if pieces else None)
    write_attrs(f, state)


def write_bad(f: h5py.File, bad: dict[str, dict]) -> None:
    text = h5py.string_dtype("utf-8")
    group = f.create_group(S.BAD)
    recs = list(bad.values())
    group.create_dataset("ids", data=np.asarray([r["id"] for r in recs], dtype=object), dtype=text)
    group.create_dataset("digests", data=np.asarray([r["digest"] for r in recs], dtype="S64"))
    group.create_dataset(
        "reasons", data=np.asarray([r["reason"] for r in recs], dtype=object), dtype=text
    )


def write_attrs(f: h5py.File, state: State) -> None:
    for key, value in state.attrs.items():
        f.attrs[key] = value
    f.attrs["format"] = S.FORMAT_NAME
    for key, value in state.fingerprint.to_attrs().items():
        f.attrs[key] = value
    f.attrs["n_items"] = state.n


def store_ids(store, state: State) -> list[str]:
    """Ids of every row, in row order, read from the shards."""
    return _column(store, state, lambda f: f[S.IDS].asstr()[...].tolist())


def store_digests(store, state: State) -> list[str]:
    """Content digests of every row, in row order."""
    return _column(store, state, lambda f: f[S.DIGESTS][:].astype(str).tolist())


def _column(store, state: State, read) -> list:
    return list(_array(store, state, lambda f: np.asarray(read(f), dtype=object)))


def _array(store, state: State, read) -> np.ndarray:
    parts, cache = [], {}
    for k, src, _dst, length in state.segments.tolist():
        if k not in cache:
            with open_existing(store, state.shards[k]) as f:
                cache[k] = read(f)
        parts.append(cache[k][src : src + length])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=object)


class RowLookup:
    """Find store rows by id in O(log N) numpy steps, from the shards' id hashes.

    Uses the :class:`~embedkit.store.idindex.IdIndex` the checks on open built (else reads
    the 16-byte id hashes itself); digests are read only for the rows asked. No per-row
    Python objects, so planning and committing a few new rows stays cheap however big
    the store is.
    """

    def __init__(self, store, state: State | None):
        self._store, self._state = store, state
        if state is None or state.n == 0:
            index = IdIndex(np.zeros(0, "S16"))
        elif state.id_index is not None and len(state.id_index.hashes) == state.n:
            index = state.id_index
        else:
            index = IdIndex(_array(store, state, _read_hashes))
        self._index = index
        self.hashes = index.hashes  # (N,) S16

    def digests(self, rows: np.ndarray) -> np.ndarray:
        """(k,) S64 content digests of store ``rows``, read from their shards only."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype="S64")
        if not len(rows):
            return out
        shard, src = self._state.rows_of()
        for k in np.unique(shard[rows]).tolist():
            mine = np.flatnonzero(shard[rows] == k)
            at = src[rows[mine]]
            order = np.argsort(at)  # h5py reads increasing, distinct rows
            wanted, back = np.unique(at[order], return_inverse=True)
            with open_existing(self._store, self._state.shards[k]) as f:
                got = f[S.DIGESTS][...] if len(wanted) > 1024 else f[S.DIGESTS][wanted]
            got = got[wanted] if len(wanted) > 1024 else got
            out[mine[order]] = np.asarray(got, dtype="S64")[back]
        return out

    def rows(self, hashes: np.ndarray) -> np.ndarray:
        """Store row of each id hash, -1 where the id is not in the store."""
        return self._index.rows(hashes)


def _read_hashes(f) -> np.ndarray:
    if S.ID_HASH in f:
        return f[S.ID_HASH][...]
    from embedkit.store.shards import id_hashes  # a schema-1 file: hash its ids once

    return id_hashes(f[S.IDS].asstr()[...])


def open_existing(store, name: str):
    """Open a shard the index names; a missing one is a one-line StoreError."""
    try:
        return open_shard(shard_path(store, name))
    except FileNotFoundError:
        raise StoreError(missing_shard(store, name)) from None


def missing_shard(store, name: str) -> str:
    return missing_file(store, shard_path(store, name))


def missing_file(store, path: Path) -> str:
    """The one-line error for a shard or column file that the index names but is gone."""
    what = "column file" if path.parent.name == column_dir(store).name else "shard"
    return (
        f"{store}: {what} {path} is missing; a store is the index file plus "
        f"its folder {sidecar(store).name}/: copy both, or share one file made with "
        "`embedkit store pack`"
    )


def shard_rows(store: Path, state: State) -> dict[str, int]:
    rows = {}
    for name in state.shards:
        with open_existing(store, name) as f:
            rows[name] = int(f[S.LABELS].shape[0])
    return rows


def store_nbytes(store: Path, state: State | None) -> int:
    """Bytes of the index plus the shards the state refers to."""
    if state is None or not store.exists():
        return 0
    total = store.stat().st_size
    files = [shard_path(store, name) for name in state.shards if name != SELF]
    files += [column_dir(store) / name for name, _ in dict(state.pieces or []).items()]
    for path in files:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total
