"""Merging shards: compaction (automatic past a shard count, or ``embedkit store compact``)
and the one-file form to share a store (``embedkit store pack STORE OUT``).

Both copy live rows, in row order, into a new file written beside its final name and
renamed; compaction then commits a version naming it (the merged shards stay for older
versions until ``store vacuum``).

    embedkit store compact feats.h5
    embedkit store pack feats.h5 feats-shared.h5
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError, UserInputError
from embedkit.store import format as S
from embedkit.store.files.integrity import marked_shards, no_store
from embedkit.store.files.shards import ShardBuilder, check_free, disk_errors, open_shard
from embedkit.store.read.state import State, load_state, read_array, segments_of
from embedkit.store.txn.begin import prepare, prune
from embedkit.store.txn.index import write_index, write_parts
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock, crash_point

_COPY_BYTES = 64 << 20  # bytes per read when copying rows


def compact(store, *, timeout: float = LOCK_TIMEOUT) -> int:
    """Merge all shards of ``store`` into one; returns the number of shards before.

    Examples
    --------
    >>> compact("feats.h5")  # doctest: +SKIP
    12
    """
    store = Path(store)
    with WriterLock(store, timeout=timeout, what="compacting") as lock:
        state = prepare(store, lock, required=True)
        if marked_shards(state.attrs):
            raise StoreError(
                f"{store}: shards marked for recompute ({', '.join(marked_shards(state.attrs))}); "
                "re-run extract into the store first, then compact"
            )
        before = len(state.shards)
        if before > 1 or len(state.segments) > 1:
            compact_locked(store, state, keep=1)
        return before


def compact_locked(store: Path, state: State, *, keep: int = 1) -> State:
    """Merge the smallest shards until at most ``keep`` remain (caller holds the lock)."""
    shard_of, src_of = state.rows_of()
    live = np.bincount(shard_of, minlength=len(state.shards))
    n_merge = len(state.shards) - max(1, keep) + 1
    merged = np.argsort(live, kind="stable")[: max(2, n_merge)] if keep > 1 else None
    rows = np.arange(state.n) if merged is None else np.flatnonzero(np.isin(shard_of, merged))
    path = copy_rows(store, state, rows, S.shard_dir(store))
    crash_point("compacted-shard")
    names = [*state.shards, path.name]
    shard_of[rows] = len(names) - 1  # rows_of() gave new arrays: changed in place
    src_of[rows] = np.arange(len(rows))
    new = prune(replace(state, shards=names, segments=segments_of(shard_of, src_of)))
    write_index(store, new, base=state, operation="compact")
    return new


def copy_rows(store, state: State, rows, folder: Path, *, final=None, before_rename=None):
    """A new shard in ``folder`` (named ``final`` when given) holding ``rows`` (sorted) of
    ``state``; ``before_rename(tmp)`` runs on the complete file before it is named."""
    ids = read_array(store, state, lambda f: f[S.IDS].asstr()[...])[rows].tolist()
    digests = read_array(store, state, lambda f: f[S.DIGESTS][...]).astype("S64")[rows]
    labels = [state.label_names[c] if c >= 0 else None for c in state.labels[rows].tolist()]
    folder.mkdir(parents=True, exist_ok=True)
    args = (folder, state.fingerprint, ids, digests, labels, state.label_names, state.split[rows])
    with ShardBuilder(*args) as builder, contextlib.ExitStack() as opened:
        seg = state.segments
        ends = seg[:, 2] + seg[:, 3]
        files = {}  # shard index -> its open file
        for tap in state.fingerprint.tap_infos:
            row_bytes = int(np.prod(tap.shape)) * np.dtype(tap.dtype).itemsize
            step = max(1, _COPY_BYTES // max(1, row_bytes))
            for lo in range(0, len(rows), step):
                chunk = rows[lo : lo + step]
                out = np.empty((len(chunk), *tap.shape), dtype=tap.dtype)
                first = np.searchsorted(ends, chunk, side="right")
                for m in np.unique(first).tolist():
                    k, src, dst, _ = seg[m].tolist()
                    sel = np.flatnonzero(first == m)
                    if k not in files:
                        files[k] = opened.enter_context(
                            open_shard(S.shard_path(store, state.shards[k]))
                        )
                    ds = files[k][f"{S.FEATURES}/{tap.name}"]
                    a, b = int(chunk[sel[0]]), int(chunk[sel[-1]]) + 1
                    block = ds[src + a - dst : src + b - dst]
                    out[sel] = block[chunk[sel] - a]
                builder.write(tap, lo, out)
        return builder.finish(final, before_rename)


def pack(store, out, *, timeout: float = LOCK_TIMEOUT, overwrite: bool = False) -> Path:
    """Write ``store`` as one self-contained file ``out`` (to share or archive).

    The packed file holds every row, label, split and attribute in one file that plain
    h5py reads as a store; embedkit itself reads only the current layout, so the receiver
    runs ``embedkit store upgrade OUT`` once to turn it back into index + shards.
    An existing ``out`` is refused unless ``overwrite`` (then it is replaced atomically);
    ``out`` with a store folder ``out.d`` beside it, or the store itself, always is.

    Examples
    --------
    >>> pack("feats.h5", "feats-packed.h5")  # doctest: +SKIP
    PosixPath('feats-packed.h5')
    """
    store, out = Path(store), Path(out)
    if S.sidecar(out).exists() or (out.exists() and out.samefile(store)):
        raise UserInputError(
            f"{out}: is a store with its folder {out}.d; choose a new path (pack never "
            "replaces a store)"
        )
    if out.exists() and not overwrite:
        raise UserInputError(f"{out}: already exists; choose a new path or pass --overwrite")
    state = load_state(store)  # a snapshot: shards are immutable, no lock needed to read
    if state is None:
        raise StoreError(no_store(store))
    rows = np.arange(state.n)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = sum(os.stat(S.shard_path(store, name)).st_size for name in state.shards) + (1 << 20)
    check_free(out.parent, size, out)
    parts = lambda tmp: _add_index_parts(tmp, state)  # noqa: E731
    return copy_rows(store, state, rows, out.parent, final=out, before_rename=parts)


def _add_index_parts(tmp: Path, state: State) -> None:
    with disk_errors(tmp, 1 << 20), h5py.File(tmp, "r+") as f:
        f[S.LABELS][...] = state.labels
        write_parts(f, state, [S.SELF], [[0, 0, 0, state.n]])
