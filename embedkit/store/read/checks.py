"""Structural checks run every time a store is opened: cheap, and one line per problem.

:func:`check_index` checks the index file's metadata before anything is read from it
(attributes, datasets, lengths, tap widths, the row map and file lists);
:func:`~embedkit.store.read.rowchecks.check_rows` then checks the values read and the open
shards. Neither reads a feature array. The first problem is raised as a
:class:`~embedkit.errors.StoreError` naming the file and the field::

    feats.h5: /labels has 990 rows but /ids has 1000; re-run extract or restore the store

``embedkit store verify`` runs the same generators to the end and adds the full reads
(docs/store-format.md, "Checks on open and ``embedkit store verify``").
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import h5py
import numpy as np

from embedkit.contract import tap_entry_problem
from embedkit.errors import StoreError, short
from embedkit.store import format as S
from embedkit.store.format import FILE_NAME, META, RESTORE, SELF, SHARD_FORMAT

_MISSING = object()  # attr_value of an attribute that is not there


def old_layout(f: h5py.File) -> str | None:
    """What older layout the index ``f`` has (None: the current one).

    Schema 1 (one file, no ``/_store``), packed (``/_store/shards`` is ``[""]``: the file
    is its own shard) and schema 2 before column files (no ``/_store/columns``).
    """
    if not _exists(f, META):
        return "a schema-1 store (one file)"
    if _exists(f, f"{META}/shards") and [S.as_text(v) for v in f[f"{META}/shards"][...]] == [SELF]:
        return "a packed one-file store"
    if not _exists(f, f"{META}/columns"):
        return "a schema-2 store from before column files"
    return None


def check_index(f: h5py.File, path) -> None:
    """Raise :class:`StoreError` on the first structural problem of the index file ``f``."""
    for problem in index_problems(f, path):
        raise StoreError(problem)


# -- the index file ------------------------------------------------------------------------
def index_problems(f: h5py.File, path) -> Iterator[str]:
    """Problems of the index file's attributes and dataset metadata (no data is read).

    Stops after a problem that later checks depend on (a missing ``/labels``, say).
    """
    p = str(path)
    fmt = attr_value(f, "format")
    if fmt == SHARD_FORMAT:
        yield (
            f"{p}: is a shard of a store, not a store; open the store's index file (the "
            "FILE.h5 beside the FILE.h5.d/ folder that holds this shard)"
        )
        return
    if fmt != S.FORMAT_NAME:
        what = "missing" if fmt is _MISSING else short(fmt)
        yield f"{p}: is not an embedkit feature store (attribute 'format' is {what})"
        return
    taps = yield from fingerprint_problems(f, p)
    if taps is None:
        return
    labels = yield from dataset_shape(f, p, S.LABELS, "iu", 1)
    if labels is None:
        return
    n = labels[0]
    columns = [(S.SPLIT, "SO", ()), (S.IDS, "SO", ()), (S.DIGESTS, "SO", ())]
    columns += [(f"{S.FEATURES}/{t.name}", "f", t.shape) for t in taps]
    for name, kinds, shape in columns:
        got = yield from dataset_shape(f, p, name, kinds, 1 + len(shape))
        if got is None:
            continue
        if got[0] != n:
            yield f"{p}: /{name} has {got[0]} rows but /labels has {n}; {RESTORE}"
        elif got[1:] != shape:
            yield (
                f"{p}: /{name} has rows of shape {got[1:]} but attribute 'taps' records "
                f"{shape} for it; {RESTORE}"
            )
        elif kinds == "f" and (dtype := dataset_info(f, name)[1]) != np.dtype(taps[0].dtype):
            yield f"{p}: /{name} is {dtype} but attribute 'dtype' is {taps[0].dtype}; {RESTORE}"
    group = f.get(S.FEATURES) if _exists(f, S.FEATURES) else None
    stored = group.keys() if isinstance(group, h5py.Group) else ()
    extra = sorted(set(stored) - {t.name for t in taps})
    if extra:
        yield f"{p}: /{S.FEATURES}/{extra[0]} is not among the taps in attribute 'taps'; {RESTORE}"
    n_items = attr_value(f, "n_items")
    if n_items is not _MISSING and (not _is_int(n_items) or int(n_items) != n):
        yield f"{p}: attribute 'n_items' is {short(n_items)} but /labels has {n} rows; {RESTORE}"
    runs = attr_value(f, "runs")
    if runs is not _MISSING:
        yield from _json_attr(p, "runs", runs, list)
    yield from dataset_shape(f, p, S.LABEL_NAMES, "SO", 1)
    lengths = []
    for name in ("ids", "digests", "reasons"):
        got = yield from dataset_shape(f, p, f"{S.BAD}/{name}", "SO", 1)
        lengths.append(None if got is None else got[0])
    if None not in lengths and len(set(lengths)) > 1:
        yield f"{p}: /{S.BAD}/ids, digests and reasons have {lengths} rows; {RESTORE}"
    if _exists(f, META):
        yield from _meta_problems(f, p)


def fingerprint_problems(f: h5py.File, p: str) -> Iterator[str]:
    """Problems of the fingerprint attributes; returns the taps (None when unusable)."""
    version = attr_value(f, "schema_version")
    if version is _MISSING:
        yield f"{p}: attribute 'schema_version' is missing; {RESTORE}"
        return None
    if not _is_int(version) or int(version) < 1:
        what = f"{short(version)}, not a version number"
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
        value = attr_value(f, key)
        if value is _MISSING or not isinstance(value, str):
            yield f"{p}: attribute {key!r} is {_text_problem(value)}; {RESTORE}"
            ok = False
    dtype = attr_value(f, "dtype")
    if ok and dtype not in S.STORAGE_DTYPES:
        what = f"{short(dtype)}, not one of {', '.join(S.STORAGE_DTYPES)}"
        yield f"{p}: attribute 'dtype' is {what}; {RESTORE}"
        ok = False
    preprocess = yield from _json_attr(p, "preprocess", attr_value(f, "preprocess"), dict)
    taps = yield from _json_attr(p, "taps", attr_value(f, "taps"), list)
    if preprocess is None or taps is None or not ok:
        return None
    return (yield from _taps(p, taps, dtype))


def _taps(p: str, entries: list, dtype: str) -> Iterator[str]:
    if not entries:
        yield f"{p}: attribute 'taps' is an empty list; {RESTORE}"
        return None
    taps = []
    for i, entry in enumerate(entries):
        problem = tap_entry_problem(entry, [t.name for t in taps])
        if problem is None and entry.get("shape") is None:
            problem = "field 'shape' must be a list of positive integers, got None"
        if problem is not None:
            yield f"{p}: attribute 'taps' entry {i} {problem}; {RESTORE}"
            return None
        taps.append(S.TapInfo.from_dict({**entry, "dtype": dtype}))
    return taps


def _meta_problems(f: h5py.File, p: str) -> Iterator[str]:
    shards = yield from dataset_shape(f, p, f"{META}/shards", "SO", 1)
    rowmap = yield from dataset_shape(f, p, f"{META}/rowmap", "iu", 2)
    if rowmap is not None and rowmap[1] != 4:
        yield f"{p}: /{META}/rowmap has {rowmap[1]} columns, not 4; {RESTORE}"
    if shards is None:
        return
    names = [S.as_text(v) for v in f[f"{META}/shards"][...]]
    if names == [""]:
        return  # a packed store: the file is its own shard
    if (yield from _file_names(p, "shards", names, "shard")):
        return
    if len(set(names)) != len(names):
        yield f"{p}: /{META}/shards names a shard twice; {RESTORE}"
    if _exists(f, f"{META}/columns"):
        got = yield from dataset_shape(f, p, f"{META}/columns", "SO", 1)
        names = [] if got is None else [S.as_text(v) for v in f[f"{META}/columns"][...]]
        yield from _file_names(p, "columns", names, "column")  # a name may repeat: same content


def _file_names(p: str, key: str, names: list, what: str) -> Iterator[str]:
    """The first of ``/_store/<key>``'s ``names`` that is not a plain file name (True if any)."""
    bad = next((n for n in names if not isinstance(n, str) or not FILE_NAME.fullmatch(n)), None)
    if bad is not None:
        yield f"{p}: /{META}/{key} names {short(bad)}, not a {what} file name; {RESTORE}"
    return bad is not None


# -- forgiving reads of HDF5 metadata: a value or a marker, never an exception ------------
def dataset_info(f: h5py.File, name: str) -> tuple | None:
    """``(shape, dtype, offset, stored bytes)`` of a dataset through h5py's low-level API
    (a tenth of the cost of ``f[name]``); None when it cannot be opened as a dataset."""
    try:
        dsid = h5py.h5d.open(f.id, name.encode())
        return dsid.shape, dsid.dtype, dsid.get_offset(), dsid.get_storage_size()
    except Exception:  # noqa: BLE001 - missing, a group, damaged: dataset_shape says which
        return None


def attr_value(f, key):
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
        yield f"{p}: attribute {key!r} is JSON {short(parsed)}, not {name}; {RESTORE}"
        return None
    return parsed


def dataset_shape(f, p: str, name: str, kinds: str, ndim: int) -> Iterator[str]:
    """The shape of dataset ``name`` if its dtype kind is in ``kinds`` and its rank ``ndim``."""
    fast = dataset_info(f, name)
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
    return "missing" if value is _MISSING else f"{short(value)}, not a string"
