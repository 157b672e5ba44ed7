"""Small, forgiving reads of HDF5 metadata that the checks on open share.

Each returns a value or a marker instead of raising, so a damaged file gives one line
naming the problem (:mod:`embedkit.store.read.checks`, :mod:`embedkit.store.read.rowchecks`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import h5py
import numpy as np

from embedkit.errors import short
from embedkit.store import format as S
from embedkit.store.format import RESTORE

_MISSING = object()


def _fast(f: h5py.File, name: str) -> tuple | None:
    """``(shape, dtype, offset, stored bytes)`` of a dataset through h5py's low-level API
    (a tenth of the cost of ``f[name]``); None when it cannot be opened as a dataset."""
    try:
        dsid = h5py.h5d.open(f.id, name.encode())
        return dsid.shape, dsid.dtype, dsid.get_offset(), dsid.get_storage_size()
    except Exception:  # noqa: BLE001 - missing, a group, damaged: _dataset says which
        return None


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
        yield f"{p}: attribute {key!r} is JSON {short(parsed)}, not {name}; {RESTORE}"
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
    return "missing" if value is _MISSING else f"{short(value)}, not a string"
