"""Writing a store's index file: the virtual datasets plain h5py reads, and its copy.

The index (``STORE``) is replaced atomically by every commit (tmp, fsync, rename through
:func:`embedkit.files.atomic_file`); see docs/store-format.md.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import h5py
import numpy as np

from embedkit.files import atomic_file
from embedkit.store import format as S
from embedkit.store.files.columns import write_columns
from embedkit.store.files.integrity import keep_copy, stamp
from embedkit.store.files.shards import disk_errors
from embedkit.store.format import META, column_dir, index_temp, sidecar
from embedkit.store.read.state import State


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
    needed = 200 * len(state.segments) + 100 * len(state.pieces) + (1 << 20)
    with disk_errors(index_temp(path), needed):
        with atomic_file(path, tmp=index_temp(path)) as tmp:
            with h5py.File(tmp, "w", userblock_size=S.USERBLOCK) as f:
                _write_index_body(f, path, state, shard_rows)
            stamp(tmp)
        keep_copy(path)  # what `store recover` restores
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
