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
from embedkit.store.checks import check_index, check_rows
from embedkit.store.shards import disk_errors, fsync_path, open_shard

META = "_store"  # group: shards (names) and rowmap (segments)
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
    bad_ids = [S.as_text(v) for v in f[f"{S.BAD}/ids"][:]]
    bad_digests = [S.as_text(v) for v in f[f"{S.BAD}/digests"][:]]
    reasons = [S.as_text(v) for v in f[f"{S.BAD}/reasons"][:]]
    return State(
        fingerprint=fp,
        shards=shards,
        segments=segments,
        labels=f[S.LABELS][:].astype(np.int64),
        split=f[S.SPLIT][:].astype("S8"),
        label_names=[S.as_text(v) for v in f[S.LABEL_NAMES][:]],
        bad={
            i: {"id": i, "digest": d, "reason": r} for i, d, r in zip(bad_ids, bad_digests, reasons)
        },
        attrs={k: S.as_text(v) for k, v in f.attrs.items()},
    )


def load_state(path) -> State | None:
    """Read the state of the store at ``path``; None when there is no store yet."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        reason = "a folder" if path.is_dir() else str(exc).splitlines()[0][:120]
        raise StoreError(
            f"{path}: exists but is not an HDF5 file ({reason}); choose another --out or remove it"
        ) from None
    with f:
        state = read_state(f, path)
        check_rows(path, state, [f] if state.self_contained else None)
        return state


def write_index(path, state: State, shard_rows: dict[str, int]) -> None:
    """Write ``state`` as the new index of the store at ``path``: tmp, fsync, rename.

    ``shard_rows`` gives each shard's row count (for the virtual datasets' sources).
    """
    path = Path(path)
    tmp = sidecar(path) / f"index.tmp-{os.getpid()}"
    needed = 64 * state.n + 200 * len(state.segments) + (1 << 20)
    try:
        with disk_errors(tmp, needed):
            with h5py.File(tmp, "w") as f:
                _write_index_body(f, path, state, shard_rows)
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    # gzip: these per-row columns are most of the index, which every commit rewrites
    packed = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if n else {}
    f.create_dataset(S.LABELS, data=state.labels.astype(np.int64), **packed)
    f.create_dataset(S.SPLIT, data=state.split.astype("S8"), **packed)
    f.create_dataset(S.LABEL_NAMES, data=np.asarray(state.label_names, dtype=object), dtype=text)
    write_bad(f, state.bad)
    meta = f.create_group(META)
    meta.create_dataset("shards", data=np.asarray(state.shards, dtype=object), dtype=text)
    meta.create_dataset("rowmap", data=seg.astype(np.int64).reshape(-1, 4))
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

    Built per writer from 16-byte id hashes (digests are read only for the rows asked):
    no per-row Python objects, so planning and committing a few new rows stays cheap
    however big the store is.
    """

    def __init__(self, store, state: State | None):
        self._store, self._state = store, state
        if state is None or state.n == 0:
            self.hashes = np.zeros(0, "S16")
        else:
            self.hashes = _array(store, state, _read_hashes).astype("S16")
        keys = self.hashes.view(np.uint64)[::2] if len(self.hashes) else np.zeros(0, "u8")
        self._order, self._sorted = _sorted_prefixes(keys)

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
        hashes = np.asarray(hashes, dtype="S16")
        out = np.full(len(hashes), -1, dtype=np.int64)
        if not len(self._sorted) or not len(hashes):
            return out
        keys = (hashes.view(np.uint64)[::2] >> np.uint64(32)).astype(np.uint32)
        lo = np.searchsorted(self._sorted, keys, side="left")
        hi = np.searchsorted(self._sorted, keys, side="right")
        one = np.flatnonzero(hi - lo == 1)  # the usual case: compare all 16 bytes at once
        cand = self._order[lo[one]]
        ok = self.hashes[cand] == hashes[one]
        out[one[ok]] = cand[ok]
        for i in np.flatnonzero(hi - lo > 1).tolist():  # 4-byte prefix collisions
            for j in self._order[lo[i] : hi[i]].tolist():
                if self.hashes[j] == hashes[i]:
                    out[i] = j
        return out


def _sorted_prefixes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, prefixes)``: rows sorted by the top 32 bits of their 8-byte id keys.

    One plain sort of ``prefix << 32 | row`` (N < 2**32) is about 3x faster than an argsort
    of the keys: the row rides in the low bits. Equal prefixes are resolved by the caller
    from the full 16-byte hashes.
    """
    n = len(keys)
    if n >= 1 << 32:  # not reached in practice: rows do not fit the low 32 bits
        order = np.argsort(keys >> np.uint64(32), kind="stable")
        return order, (keys[order] >> np.uint64(32)).astype(np.uint32)
    high = np.uint64(0xFFFFFFFF00000000)
    packed = np.sort((keys & high) | np.arange(n, dtype=np.uint64))  # (N,)
    order = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return order, (packed >> np.uint64(32)).astype(np.uint32)


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
    return (
        f"{store}: shard {shard_path(store, name)} is missing; a store is the index file plus "
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
    for name in state.shards:
        if name != SELF:
            with contextlib.suppress(OSError):
                total += shard_path(store, name).stat().st_size
    return total
