"""Rebuilding a store's index from its folder: ``embedkit store recover feats.h5``.

When ``feats.h5`` is gone but ``feats.h5.d/`` holds the shards and column files (an
orphaned folder), this gives the index back: from the newest intact version whose files
are all there (bit for bit), else from the shards themselves, rows in the order their
shards were written (docs/store-format.md, "Checksums, versions, recover and repair").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedkit.errors import StoreError
from embedkit.store import format as S
from embedkit.store.files.columns import read_columns
from embedkit.store.files.integrity import checksum_problem, folder_files
from embedkit.store.files.shards import open_shard
from embedkit.store.read.state import State, load_state, segments_of
from embedkit.store.txn.index import write_index, write_view
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock, now


def recover(store, *, timeout: float = LOCK_TIMEOUT) -> str:
    """Rebuild the missing index of ``store`` from its folder; returns what was done.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.store import FeatureStore
    >>> from embedkit.rows import from_arrays
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, np.ones((4, 2), np.float32), [0, 1, 0, 1]).close()
    >>> os.remove(path)
    >>> recover(path)  # doctest: +ELLIPSIS
    '...: index restored from version 1 (4 rows)'
    >>> FeatureStore(path).labels().tolist()
    [0, 1, 0, 1]
    """
    store = Path(store)
    if store.exists():
        raise StoreError(
            f"{store}: the index exists, nothing to recover; check it with `embedkit store verify`"
        )
    with WriterLock(store, timeout=timeout, what="recovering"):
        return recover_locked(store)


def recover_locked(store: Path) -> str:
    """:func:`recover` for a caller that holds the writer lock (``store verify --repair``)."""
    if not S.shard_dir(store).is_dir() or not any(S.shard_dir(store).iterdir()):
        raise StoreError(f"{store}: no shards in {S.shard_dir(store)}; nothing to recover from")
    done = _from_versions(store)
    if done is not None:
        return done
    state = _from_shards(store)
    write_index(store, state, operation="recover")
    return (
        f"{store}: index rebuilt from {len(state.shards)} shard(s) ({state.n} rows); "
        "check labels and split with `embedkit info`"
    )


def _from_versions(store: Path) -> str | None:
    """The newest intact version whose files are all there, copied back as the view."""
    for number in reversed(S.versions(store)):
        if checksum_problem(S.version_path(store, number)) is not None:
            continue
        write_view(store, number)
        try:
            state = load_state(store)  # every shard and column file it names is there
        except StoreError:
            store.unlink()
            continue
        return f"{store}: index restored from version {number} ({state.n} rows)"
    return None


def _from_shards(store: Path) -> State:
    paths = sorted(folder_files(S.shard_dir(store)), key=lambda p: (p.stat().st_mtime_ns, p.name))
    fingerprint, names = None, []
    rows: dict[str, tuple] = {}  # id -> (shard, src, label, split); a later row replaces in place
    for k, path in enumerate(paths):
        with open_shard(path, fingerprint) as f:
            fingerprint = fingerprint or S.Fingerprint.from_attrs(f.attrs)
            ids = f[S.IDS].asstr()[...].tolist()
            own = [S.as_text(v) for v in f[S.LABEL_NAMES][...]]
            codes = f[S.LABELS][...].tolist()
            split = f[S.SPLIT][...].astype("S8").tolist()
        names += [n for n in own if n not in names]
        for r, item in enumerate(ids):
            rows[item] = (k, r, names.index(own[codes[r]]) if codes[r] >= 0 else -1, split[r])
    shard_of, src_of, label_of, split_of = list(zip(*rows.values())) or [(), (), (), ()]
    labels, split = _columns(store, np.asarray(label_of, np.int64), np.asarray(split_of, "S8"))
    at = now()
    return State(
        fingerprint=fingerprint,
        shards=[p.name for p in paths],
        segments=segments_of(np.asarray(shard_of, np.int64), np.asarray(src_of, np.int64)),
        labels=labels,
        split=split,
        label_names=names,
        attrs={"created": at, "updated": at, "runs": json.dumps([{"recovered": at}])},
    )


def _columns(store: Path, labels: np.ndarray, split: np.ndarray):
    """The column files' labels and split when they cover every row with known classes."""
    files = folder_files(S.column_dir(store))
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))  # row order: oldest first
    try:
        col_labels, col_split, _ = read_columns(store, [p.name for p in files])
    except StoreError:
        return labels, split
    if len(col_labels) != len(labels) or (col_labels >= max(1, labels.max(initial=0) + 1)).any():
        return labels, split
    return col_labels, col_split
