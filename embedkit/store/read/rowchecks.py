"""Checks on open, second half: the snapshot's values, its shards and its ids.

:func:`check_rows` runs once the index's values are read: labels and splits valid, the row
map within its shards, each shard of the store's fingerprint with its bytes inside the
file, and ids unique. The id hashes sorted for that check are kept on the snapshot
(:class:`~embedkit.store.read.idindex.IdIndex`), so a writer looks ids up without sorting
them again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError, short
from embedkit.store import format as S
from embedkit.store.files.shards import open_existing
from embedkit.store.format import META, RESTORE
from embedkit.store.read.checks import attr_value, dataset_info, dataset_shape, fingerprint_problems
from embedkit.store.read.idindex import IdIndex


def check_rows(
    path, state, handles: Sequence[h5py.File] | None = None, *, keep_ids: bool = False
) -> None:
    """Raise on the first problem of a snapshot's values, its shards or its ids.

    ``handles`` are the open shards, one per ``state.shards`` entry; without them every
    shard is opened (and closed) here. ``keep_ids`` keeps the sorted id hashes the check
    built as ``state.id_index`` (28 bytes a row) for a writer's lookups; readers drop it.
    """
    for problem in row_problems(path, state, handles):
        raise StoreError(problem)
    if not keep_ids:
        state.id_index = None


def row_problems(path, state, handles: Sequence[h5py.File] | None = None) -> Iterator[str]:
    """Problems of the snapshot ``state`` (labels, splits, row map), its shards and ids."""
    yield from value_problems(path, state)
    if _rowmap_problem(state.segments, state.n, len(state.shards)) is None:
        yield from _shard_and_id_problems(path, state, handles)  # not over a broken row map


def value_problems(path, state) -> Iterator[str]:
    """Problems of the snapshot's values: class names, labels, splits and the row map."""
    p, n = str(path), state.n
    names = state.label_names
    if len(set(names)) != len(names):
        yield f"{p}: /label_names holds a class name twice; {RESTORE}"
    y = state.labels
    if n and (y.min() < -1 or y.max() >= len(names)):
        i = int(np.flatnonzero((y < -1) | (y >= len(names)))[0])
        yield (
            f"{p}: /labels row {i} is {int(y[i])}, beyond /label_names ({len(names)} names); "
            f"{RESTORE}"
        )
    split = np.ascontiguousarray(state.split, dtype="S8")
    codes = split.view(np.uint64)  # (N,) one word per value: 10x faster than comparing bytes
    known = np.zeros(n, bool)
    for value in np.asarray(["", *S.SPLITS], dtype="S8").view(np.uint64).tolist():
        known |= codes == value
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        what = f"{short(S.as_text(split[i]))}, not train/val/test/''"
        yield f"{p}: /split row {i} is {what}; {RESTORE}"
    problem = _rowmap_problem(state.segments, n, len(state.shards))
    if problem:
        yield f"{p}: /{META}/rowmap {problem}; {RESTORE}"


def _shard_and_id_problems(path, state, handles) -> Iterator[str]:
    p, seg = str(path), state.segments
    with contextlib.ExitStack() as opened:  # closes the shards opened here
        if handles is None:
            try:
                handles = [opened.enter_context(open_existing(path, n)) for n in state.shards]
            except StoreError as exc:
                yield str(exc)
                return
        ok = True
        for k, f in enumerate(handles):
            used = seg[seg[:, 0] == k]
            need = int((used[:, 1] + used[:, 3]).max()) if len(used) else 0
            for problem in shard_problems(p, state, f, need):
                ok = False
                yield problem
        if ok:
            yield from _duplicate_ids(p, state, handles)


def _rowmap_problem(seg: np.ndarray, n: int, n_shards: int) -> str | None:
    if not len(seg):
        return None if n == 0 else f"maps no rows but /labels has {n}"
    k, src, dst, length = seg.T
    if ((k < 0) | (k >= n_shards)).any():
        return f"names shard {int(k[(k < 0) | (k >= n_shards)][0])} of {n_shards}"
    if (length < 1).any() or (src < 0).any():
        return "holds a segment with a negative start or no rows"
    ends = np.concatenate([[0], np.cumsum(length)[:-1]])
    if (dst != ends).any() or int(length.sum()) != n:
        return f"covers {int(length.sum())} rows out of order or with gaps; /labels has {n}"
    return None


def shard_problems(p: str, state, f: h5py.File, need: int) -> Iterator[str]:
    """Problems of one open shard: fingerprint, row counts, tap shapes, feature bytes.

    Only what reading relies on is looked at (``verify_store`` reads the rest): the
    ``fingerprint`` attribute (fields compared only when it differs), ``/labels`` for the
    row count, ``/ids``, ``/id_hash`` and each tap's dataset, which must lie inside the
    file (it is memory-mapped).
    """
    where = f"{p}: shard {Path(f.filename).name}"
    if attr_value(f, "fingerprint") != state.fingerprint.digest:
        stored = yield from fingerprint_problems(f, where)
        if stored is None:  # a shard of another store
            return
        theirs = replace(S.Fingerprint.from_attrs(f.attrs), schema_version=S.SCHEMA_VERSION)
        field = theirs.first_difference(state.fingerprint)
        if field is not None:
            yield (
                f"{where}: attribute {field!r} differs from the index's: a shard of another "
                f"store; {RESTORE}"
            )
            return
    info = {name: dataset_info(f, name) for name in (S.LABELS, S.IDS, S.ID_HASH)}
    if info[S.LABELS] is None or info[S.LABELS][1].kind not in "iu":
        yield from dataset_shape(f, where, S.LABELS, "iu", 1)  # names the problem
        return
    rows = info[S.LABELS][0][0]
    if need > rows:
        yield f"{where}: has {rows} rows but /{META}/rowmap reads up to row {need}; {RESTORE}"
    if info[S.ID_HASH] is None:
        yield (
            f"{where}: has no /{S.ID_HASH} (a schema-1 file linked in by an older upgrade); "
            f"run `embedkit store upgrade {p}`"
        )
        return
    taps = [(f"{S.FEATURES}/{t.name}", t.shape) for t in state.fingerprint.tap_infos]
    columns = [(S.IDS, ()), *taps, (S.ID_HASH, ())]
    size = os.fstat(f.id.get_vfd_handle()).st_size
    for name, shape in columns:
        got = info.get(name) or dataset_info(f, name)
        if got is None:
            yield from dataset_shape(f, where, name, "SOfiu", 1 + len(shape))
            continue
        if got[0] != (rows, *shape):
            yield f"{where}: /{name} has shape {got[0]}, expected {(rows, *shape)}; {RESTORE}"
        elif got[2] is not None and got[2] + got[3] > size:
            yield f"{where}: /{name} ends past the end of the file (truncated); {RESTORE}"


def _duplicate_ids(p: str, state, handles: Sequence[h5py.File]) -> Iterator[str]:
    """Ids twice in the store, from the shards' id hashes (kept as ``state.id_index``)."""
    used = np.unique(state.segments[:, 0]).tolist()
    if not state.n:
        return
    state.id_index = IdIndex(state.gather({k: _read(handles[k], S.ID_HASH) for k in used}))
    yield from _first_repeat(p, state, handles, state.id_index.repeats())


def _first_repeat(p: str, state, handles, pairs: list[tuple[int, int]]) -> Iterator[str]:
    """The first pair of rows whose ids are equal (keys can collide; the ids decide)."""
    if not pairs:
        return
    shard, src = state.rows_of()
    for a, b in sorted(pairs):
        ida, idb = (S.as_text(handles[shard[r]][S.IDS][src[r]]) for r in (a, b))
        if ida == idb:
            yield f"{p}: /ids holds {short(ida)} twice (rows {a} and {b}); {RESTORE}"
            return


def _read(f: h5py.File, name: str) -> np.ndarray:
    """A whole dataset through the low-level API (no high-level Dataset object)."""
    dsid = h5py.h5d.open(f.id, name.encode())
    out = np.empty(dsid.shape, dtype=dsid.dtype)
    dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out
