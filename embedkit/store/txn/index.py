"""Committing a store's state: a new numbered version, then the view plain h5py reads.

Creating ``STORE.d/versions/NNNNNNNN.h5`` exclusively is the commit; ``STORE`` is then
replaced by a copy of it. A kill in between leaves the view a version behind, which the
next writer copies forward. Nothing a version names is deleted here (docs/store-format.md,
"Writes").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np

from embedkit.files import atomic_file, temp_name
from embedkit.store import format as S
from embedkit.store.files.columns import write_columns
from embedkit.store.files.integrity import stamp
from embedkit.store.files.shards import disk_errors, read_shard
from embedkit.store.read.state import State
from embedkit.store.txn.lock import crash_point, now


def write_index(
    path,
    state: State,
    *,
    base: State | None = None,
    operation: str = "commit",
    replaced: int = 0,
    new_columns: bool = False,
) -> int:
    """Commit ``state`` as the next version of the store at ``path``; returns its number.

    Labels and split go to column files first (``state.pieces`` is set to them): those of
    ``base``, the snapshot ``state`` was derived from, are kept where its rows are
    unchanged, so an append writes only its new rows' values. ``operation`` (``extract``,
    ``split``, ...) and what changed against ``base`` are recorded for ``store log``.
    ``new_columns`` writes every column file anew (a repair of a damaged one).
    """
    path = Path(path)
    shard_rows = {n: read_shard(path, n, lambda f: int(f[S.LABELS].shape[0])) for n in state.shards}
    keep = None if new_columns else base
    state.pieces = write_columns(path, state.labels, state.split, keep) if state.n else []
    number = max(S.versions(path), default=0) + 1
    change = {**_change(state, base), "replaced": int(replaced)}
    state.attrs = {
        **state.attrs,
        "version": number,
        "operation": operation,
        "committed": now(),
        "change": json.dumps(change),
    }
    final = S.version_path(path, number)
    final.parent.mkdir(parents=True, exist_ok=True)
    needed = 200 * len(state.segments) + 100 * len(state.pieces) + (1 << 20)
    with disk_errors(final, 2 * needed), atomic_file(final, exclusive=True) as tmp:
        with h5py.File(tmp, "w", userblock_size=S.USERBLOCK) as f:
            _write_index_body(f, path, state, shard_rows)
        stamp(tmp)
    crash_point("version-written")
    write_view(path, number)
    return number


def write_view(path, number: int) -> None:
    """Replace the store file ``path`` by a copy of version ``number`` (atomically)."""
    source = S.version_path(path, number)
    tmp = temp_name(S.sidecar(path) / "index")  # in the folder: nothing but the store beside it
    with disk_errors(path, source.stat().st_size), atomic_file(path, tmp=tmp) as tmp:
        shutil.copyfile(source, tmp)


def _change(state: State, base: State | None) -> dict:
    """Rows added, and rows whose class or split changed, against ``base``."""
    if base is None:
        return {
            "added": state.n,
            "labels_changed": int((state.labels >= 0).sum()),
            "split_changed": int((state.split != b"").sum()),
        }
    m = min(base.n, state.n)
    return {
        "added": max(0, state.n - base.n),
        "labels_changed": int((state.labels[:m] != base.labels[:m]).sum()),
        "split_changed": int((state.split[:m] != base.split[:m]).sum()),
    }


def _write_index_body(f: h5py.File, path: Path, state: State, shard_rows: dict[str, int]):
    text = h5py.string_dtype("utf-8")
    n, seg, pieces = state.n, state.segments, state.pieces
    # (file, its rows, first source row, first store row, rows) of each run of the store
    folder = S.sidecar(path).name
    shard_runs = [(f"{folder}/shards/{state.shards[k]}", shard_rows[state.shards[k]], src, dst, m)
                  for k, src, dst, m in seg.tolist()]  # fmt: skip
    starts = np.cumsum([0, *(rows for _, rows in pieces)]).tolist()
    column_runs = [(f"{folder}/columns/{name}", rows, 0, dst, rows)
                   for (name, rows), dst in zip(pieces, starts)]  # fmt: skip
    taps = state.fingerprint.tap_infos
    columns = [(S.IDS, text, (), shard_runs), (S.DIGESTS, "S64", (), shard_runs)]
    columns += [(f"{S.FEATURES}/{t.name}", t.dtype, t.shape, shard_runs) for t in taps]
    columns += [(S.LABELS, np.int64, (), column_runs), (S.SPLIT, "S8", (), column_runs)]
    f.create_group(S.FEATURES)
    for name, dtype, shape, runs in columns:
        layout = h5py.VirtualLayout(shape=(n, *shape), dtype=dtype)
        for file, rows, src, dst, m in runs:
            source = h5py.VirtualSource(file, name, shape=(rows, *shape), dtype=dtype)
            layout[dst : dst + m] = source[src : src + m]
        f.create_virtual_dataset(name, layout)
    for t in taps:
        f[f"{S.FEATURES}/{t.name}"].attrs.update(S.tap_attrs(t))
    f.create_dataset(S.LABEL_NAMES, data=np.asarray(state.label_names, dtype=object), dtype=text)
    meta = write_parts(f, state, state.shards, seg)
    names = np.asarray([name for name, _ in pieces], dtype=object)
    meta.create_dataset("columns", shape=(len(pieces),), dtype=text, data=names if pieces else None)


def write_parts(f: h5py.File, state: State, shards: list[str], segments) -> h5py.Group:
    """The bad items, the row map over ``shards`` and the root attributes of an index."""
    text = h5py.string_dtype("utf-8")
    group, recs = f.create_group(S.BAD), list(state.bad.values())
    group.create_dataset("ids", data=np.asarray([r["id"] for r in recs], dtype=object), dtype=text)
    group.create_dataset("digests", data=np.asarray([r["digest"] for r in recs], dtype="S64"))
    reasons = np.asarray([r["reason"] for r in recs], dtype=object)
    group.create_dataset("reasons", data=reasons, dtype=text)
    meta = f.create_group(S.META)
    meta.create_dataset("shards", data=np.asarray(shards, dtype=object), dtype=text)
    meta.create_dataset("rowmap", data=np.asarray(segments, np.int64).reshape(-1, 4))
    fingerprint = state.fingerprint.to_attrs()
    f.attrs.update({**state.attrs, "format": S.FORMAT_NAME, **fingerprint, "n_items": state.n})
    return meta
