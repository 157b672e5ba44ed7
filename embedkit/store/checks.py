"""Structural checks run every time a store is opened: cheap, and one line per problem.

Opening a store (``FeatureStore``, ``embedkit info/train/bench/predict/audit/split``, an
extract into an existing store, ``embedkit store compact/pack/upgrade``) runs two checks:

- :func:`check_index`, on the index file's metadata before anything is read from it:
  root attributes present, typed and valid JSON; every dataset present with the right
  kind, rank and dtype; every ``(N, ...)`` dataset ``N`` rows long; each tap's dataset as
  wide as the tap the ``taps`` attribute records; the row map's shape and shard names.
- :func:`check_rows`, on the values read into the snapshot and on the open shards: label
  indexes within ``label_names``, split values, the row map contiguous and within its
  shards, each shard of the store's fingerprint with consistent row counts and its feature
  bytes inside the file, and ids unique (from the shards' 16-byte id hashes).

Neither reads a feature array. The first problem is raised as a
:class:`~embedkit.errors.StoreError` naming the file and the field::

    feats.h5: /labels has 990 rows but /ids has 1000; re-run extract or restore the store

``embedkit store verify`` (:func:`embedkit.store.verify_store`) runs the same generators
to the end and adds the full reads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError
from embedkit.store import schema as S

RESTORE = "re-run extract or restore the store"
SHARD_FORMAT = "embedkit-shard"
META = "_store"
_SHARD_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*\.h5")
_MISSING = object()


def check_index(f: h5py.File, path) -> None:
    """Raise :class:`StoreError` on the first structural problem of the index file ``f``."""
    for problem in index_problems(f, path):
        raise StoreError(problem)


def check_rows(path, state, handles: Sequence[h5py.File] | None = None) -> None:
    """Raise on the first problem of a snapshot's values, its shards or its ids.

    ``handles`` are the open shards, one per ``state.shards`` entry; without them every
    shard is opened (and closed) here.
    """
    for problem in row_problems(path, state, handles):
        raise StoreError(problem)


# -- the index file ------------------------------------------------------------------------
def index_problems(f: h5py.File, path) -> Iterator[str]:
    """Problems of the index file's attributes and dataset metadata (no data is read).

    Stops after a problem that later checks depend on (a missing ``/labels``, say).
    """
    p = str(path)
    fmt = _attr(f, "format")
    if fmt == SHARD_FORMAT:
        yield (
            f"{p}: is a shard of a store, not a store; open the store's index file (the "
            "FILE.h5 beside the FILE.h5.d/ folder that holds this shard)"
        )
        return
    if fmt != S.FORMAT_NAME:
        what = "missing" if fmt is _MISSING else _short(fmt)
        yield f"{p}: is not an embedkit feature store (attribute 'format' is {what})"
        return
    taps = yield from fingerprint_problems(f, p)
    if taps is None:
        return
    labels = yield from _dataset(f, p, S.LABELS, "iu", 1)
    if labels is None:
        return
    n = labels[0]
    columns = [(S.SPLIT, "SO", ()), (S.IDS, "SO", ()), (S.DIGESTS, "SO", ())]
    columns += [(f"{S.FEATURES}/{t.name}", "f", t.shape) for t in taps]
    for name, kinds, shape in columns:
        got = yield from _dataset(f, p, name, kinds, 1 + len(shape))
        if got is None:
            continue
        if got[0] != n:
            yield f"{p}: /{name} has {got[0]} rows but /labels has {n}; {RESTORE}"
        elif got[1:] != shape:
            yield (
                f"{p}: /{name} has rows of shape {got[1:]} but attribute 'taps' records "
                f"{shape} for it; {RESTORE}"
            )
        elif kinds == "f" and _fast(f, name)[1] != np.dtype(taps[0].dtype):
            dtype = _fast(f, name)[1]
            yield f"{p}: /{name} is {dtype} but attribute 'dtype' is {taps[0].dtype}; {RESTORE}"
    group = f.get(S.FEATURES) if _exists(f, S.FEATURES) else None
    extra = sorted(
        set(group.keys() if isinstance(group, h5py.Group) else ()) - {t.name for t in taps}
    )
    if extra:
        yield f"{p}: /{S.FEATURES}/{extra[0]} is not among the taps in attribute 'taps'; {RESTORE}"
    n_items = _attr(f, "n_items")
    if n_items is not _MISSING and (not _is_int(n_items) or int(n_items) != n):
        yield f"{p}: attribute 'n_items' is {_short(n_items)} but /labels has {n} rows; {RESTORE}"
    runs = _attr(f, "runs")
    if runs is not _MISSING:
        yield from _json_attr(p, "runs", runs, list)
    yield from _dataset(f, p, S.LABEL_NAMES, "SO", 1)
    lengths = []
    for name in ("ids", "digests", "reasons"):
        got = yield from _dataset(f, p, f"{S.BAD}/{name}", "SO", 1)
        lengths.append(None if got is None else got[0])
    if None not in lengths and len(set(lengths)) > 1:
        yield f"{p}: /{S.BAD}/ids, digests and reasons have {lengths} rows; {RESTORE}"
    if _exists(f, META):
        yield from _meta_problems(f, p)


def fingerprint_problems(f: h5py.File, p: str) -> Iterator[str]:
    """Problems of the fingerprint attributes; returns the taps (None when unusable)."""
    version = _attr(f, "schema_version")
    if version is _MISSING:
        yield f"{p}: attribute 'schema_version' is missing; {RESTORE}"
        return None
    if not _is_int(version) or int(version) < 1:
        what = f"{_short(version)}, not a version number"
        yield f"{p}: attribute 'schema_version' is {what}; {RESTORE}"
        return None
    if int(version) > S.SCHEMA_VERSION:
        yield (
            f"{p}: schema version {int(version)} is newer than this embedkit supports "
            f"({S.SCHEMA_VERSION}); upgrade embedkit"
        )
        return None
    ok = True
    for key in ("backbone_sha256", "dtype"):
        value = _attr(f, key)
        if value is _MISSING or not isinstance(value, str):
            yield f"{p}: attribute {key!r} is {_text_problem(value)}; {RESTORE}"
            ok = False
    dtype = _attr(f, "dtype")
    if ok and dtype not in S.STORAGE_DTYPES:
        what = f"{_short(dtype)}, not one of {', '.join(S.STORAGE_DTYPES)}"
        yield f"{p}: attribute 'dtype' is {what}; {RESTORE}"
        ok = False
    preprocess = yield from _json_attr(p, "preprocess", _attr(f, "preprocess"), dict)
    taps = yield from _json_attr(p, "taps", _attr(f, "taps"), list)
    if preprocess is None or taps is None or not ok:
        return None
    return (yield from _taps(p, taps, dtype))


def _taps(p: str, entries: list, dtype: str) -> Iterator[str]:
    if not entries:
        yield f"{p}: attribute 'taps' is an empty list; {RESTORE}"
        return None
    taps, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{p}: attribute 'taps' entry {i}"
        if not isinstance(entry, dict):
            yield f"{where} is {_short(entry)}, not an object; {RESTORE}"
            return None
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            yield f"{where}: 'shape' is {_short(shape)}, not a list of sizes; {RESTORE}"
            return None
        try:
            tap = S.TapInfo.from_dict({**entry, "dtype": dtype})
        except (TypeError, ValueError) as exc:
            yield f"{where}: {str(exc).splitlines()[0]}; {RESTORE}"
            return None
        if not isinstance(tap.name, str) or tap.name in seen:
            yield f"{where}: name {tap.name!r} is not a unique string; {RESTORE}"
            return None
        seen.add(tap.name)
        taps.append(tap)
    return taps


def _meta_problems(f: h5py.File, p: str) -> Iterator[str]:
    shards = yield from _dataset(f, p, f"{META}/shards", "SO", 1)
    rowmap = yield from _dataset(f, p, f"{META}/rowmap", "iu", 2)
    if rowmap is not None and rowmap[1] != 4:
        yield f"{p}: /{META}/rowmap has {rowmap[1]} columns, not 4; {RESTORE}"
    if shards is None:
        return
    names = [S.as_text(v) for v in f[f"{META}/shards"][...]]
    if names == [""]:
        return  # a packed store: the file is its own shard
    for name in names:
        if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
            yield f"{p}: /{META}/shards names {_short(name)}, not a shard file name; {RESTORE}"
            return
    if len(set(names)) != len(names):
        yield f"{p}: /{META}/shards names a shard twice; {RESTORE}"


# -- the snapshot's values, shards and ids ---------------------------------------------------
def row_problems(path, state, handles: Sequence[h5py.File] | None = None) -> Iterator[str]:
    """Problems of the snapshot ``state`` (labels, splits, row map), its shards and ids."""
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
        what = f"{_short(S.as_text(split[i]))}, not train/val/test/''"
        yield f"{p}: /split row {i} is {what}; {RESTORE}"
    seg = state.segments
    problem = _rowmap_problem(seg, n, len(state.shards))
    if problem:
        yield f"{p}: /{META}/rowmap {problem}; {RESTORE}"
        return
    opened = handles is None
    if opened:
        from embedkit.store.index import open_existing

        handles = []
        try:
            for name in state.shards:
                handles.append(open_existing(path, name))
        except StoreError as exc:
            for h in handles:
                h.close()
            yield str(exc)
            return
    try:
        ok = True
        for k, f in enumerate(handles):
            used = seg[seg[:, 0] == k]
            need = int((used[:, 1] + used[:, 3]).max()) if len(used) else 0
            for problem in shard_problems(p, state, f, need):
                ok = False
                yield problem
        if ok:
            yield from _duplicate_ids(p, state, handles)
    finally:
        if opened:
            for h in handles:
                h.close()


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
    where = p if state.shards == [""] else f"{p}: shard {Path(f.filename).name}"
    if state.shards != [""] and _attr(f, "fingerprint") != state.fingerprint.digest:
        stored = yield from fingerprint_problems(f, where)  # an upgraded schema-1 file, or
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
    info = {name: _fast(f, name) for name in (S.LABELS, S.IDS, S.ID_HASH)}
    if info[S.LABELS] is None or info[S.LABELS][1].kind not in "iu":
        yield from _dataset(f, where, S.LABELS, "iu", 1)  # names the problem
        return
    rows = info[S.LABELS][0][0]
    if need > rows:
        yield f"{where}: has {rows} rows but /{META}/rowmap reads up to row {need}; {RESTORE}"
    columns = [(S.IDS, ())] + [
        (f"{S.FEATURES}/{t.name}", t.shape) for t in state.fingerprint.tap_infos
    ]
    columns += [(S.ID_HASH, ())] if info[S.ID_HASH] is not None else []
    size = os.fstat(f.id.get_vfd_handle()).st_size
    for name, shape in columns:
        got = info.get(name) or _fast(f, name)
        if got is None:
            yield from _dataset(f, where, name, "SOfiu", 1 + len(shape))
            continue
        if got[0] != (rows, *shape):
            yield f"{where}: /{name} has shape {got[0]}, expected {(rows, *shape)}; {RESTORE}"
        elif got[2] is not None and got[2] + got[3] > size:
            yield f"{where}: /{name} ends past the end of the file (truncated); {RESTORE}"


def _fast(f: h5py.File, name: str) -> tuple | None:
    """``(shape, dtype, offset, stored bytes)`` of a dataset through h5py's low-level API
    (a tenth of the cost of ``f[name]``); None when it cannot be opened as a dataset."""
    try:
        dsid = h5py.h5d.open(f.id, name.encode())
        return dsid.shape, dsid.dtype, dsid.get_offset(), dsid.get_storage_size()
    except Exception:  # noqa: BLE001 - missing, a group, damaged: _dataset says which
        return None


def _duplicate_ids(p: str, state, handles: Sequence[h5py.File]) -> Iterator[str]:
    """Ids twice in the store, found from the first 8 bytes of the shards' id hashes.

    A schema-1 file (or one upgraded in place) has no id hashes; reading its ids would
    cost a second per 1.6M rows on every open, so ``verify_store`` checks those.
    """
    used = np.unique(state.segments[:, 0]).tolist()
    if state.n < 2 or any(_fast(handles[k], S.ID_HASH) is None for k in used):
        return
    per = {k: _read(handles[k], S.ID_HASH).view(np.uint64)[::2] for k in used}  # (R,) each
    keys = np.concatenate([per[k][src : src + n] for k, src, _, n in state.segments.tolist()])
    if not (np.diff(np.sort(keys)) == 0).any():
        return
    yield from duplicate_ids(p, state, handles, keys)


def duplicate_ids(p: str, state, handles: Sequence[h5py.File], keys: np.ndarray) -> Iterator[str]:
    """Name the first id that is twice in the store, given one sortable key per row."""
    shard, src = state.rows_of()
    order = np.argsort(keys, kind="stable")
    same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    for j in same.tolist():  # confirm with the ids themselves (8-byte hash collisions)
        a, b = sorted(order[j : j + 2].tolist())
        ida, idb = (S.as_text(handles[shard[r]][S.IDS][src[r]]) for r in (a, b))
        if ida == idb:
            yield f"{p}: /ids holds {_short(ida)} twice (rows {a} and {b}); {RESTORE}"
            return


def _read(f: h5py.File, name: str) -> np.ndarray:
    """A whole dataset through the low-level API (no high-level Dataset object)."""
    dsid = h5py.h5d.open(f.id, name.encode())
    out = np.empty(dsid.shape, dtype=dsid.dtype)
    dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return out


# -- small helpers --------------------------------------------------------------------------
def _attr(f, key):
    try:
        value = f.attrs.get(key, _MISSING)
    except Exception:  # noqa: BLE001 - an attribute h5py cannot decode
        return "<unreadable>"
    if isinstance(value, np.generic):
        value = value.item()
    return S.as_text(value) if isinstance(value, bytes) else value


def _json_attr(p: str, key: str, value, kind: type) -> Iterator[str]:
    """Parse a JSON attribute, yielding its problem; returns the value or None."""
    if value is _MISSING or not isinstance(value, str):
        yield f"{p}: attribute {key!r} is {_text_problem(value)}; {RESTORE}"
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        yield f"{p}: attribute {key!r} is not valid JSON ({exc}); {RESTORE}"
        return None
    if not isinstance(parsed, kind):
        name = "a list" if kind is list else "an object"
        yield f"{p}: attribute {key!r} is JSON {_short(parsed)}, not {name}; {RESTORE}"
        return None
    return parsed


def _dataset(f, p: str, name: str, kinds: str, ndim: int) -> Iterator[str]:
    """The shape of dataset ``name`` if its dtype kind is in ``kinds`` and its rank ``ndim``."""
    fast = _fast(f, name)
    if fast is not None:
        kind = "O" if h5py.check_string_dtype(fast[1]) else fast[1].kind
        if kind in kinds and len(fast[0]) == ndim:
            return fast[0]
    try:  # what is wrong with it
        ds = f.get(name)
        what = "missing" if ds is None else "a group, not a dataset"
        if isinstance(ds, h5py.Dataset):
            what = f"{ds.ndim}-d {ds.dtype}, not the expected type"
    except Exception as exc:  # noqa: BLE001 - a damaged object header
        what = f"unreadable ({str(exc).splitlines()[0][:100]})"
    yield f"{p}: /{name} is {what}; {RESTORE}"
    return None


def _exists(f, name: str) -> bool:
    try:
        return name in f
    except Exception:  # noqa: BLE001 - a damaged object header
        return False


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_problem(value) -> str:
    return "missing" if value is _MISSING else f"{_short(value)}, not a string"


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
