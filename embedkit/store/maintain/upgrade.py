"""Converting an older layout into the current one: ``embedkit store upgrade STORE``.

The only code that reads the older layouts (schema 1, packed, schema 2 before column
files; docs/store-format.md, "Older layouts"); every other command refuses them naming
this command. One-file stores and shards without id hashes are copied into a new shard,
labels and split go to column files, and version 1 is committed over the old file, which
stays as it was until that last rename.

    embedkit store upgrade old.h5
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError
from embedkit.store import format as S
from embedkit.store.files.integrity import no_store
from embedkit.store.files.shards import read_shard
from embedkit.store.read.checks import check_index, old_layout
from embedkit.store.read.rowchecks import check_rows, value_problems
from embedkit.store.read.state import State, index_parts, open_index, read_state, segments_of
from embedkit.store.txn.begin import prepare
from embedkit.store.txn.compact import copy_rows
from embedkit.store.txn.index import write_index
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock, crash_point


def upgrade(store, *, timeout: float = LOCK_TIMEOUT) -> bool:
    """Convert the store at ``store`` to the current layout; False when it already is.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.rows import from_arrays
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, np.ones((4, 2), np.float32)).close()
    >>> upgrade(path)
    False
    """
    store = Path(store)
    with WriterLock(store, timeout=timeout, what="upgrading") as lock:
        if not store.exists():
            raise StoreError(no_store(store))  # or the refusal of an orphaned folder
        with open_index(store) as f:
            check_index(f, store)
            current = old_layout(f) is None
            state = read_state(f, store) if current else _old_state(f, store)
        # shards without id hashes: schema-1 files an older upgrade linked in as they were
        unhashed = [n for n in state.shards if n != S.SELF and read_shard(store, n, _unhashed)]
        if current and not unhashed:
            prepare(store, lock)
            return False
        for problem in value_problems(store, state):  # labels and splits the rows keep
            raise StoreError(problem)
        if state.shards == [S.SELF] or unhashed:  # every row, in order, into one new shard
            rows = np.arange(state.n)
            names = [copy_rows(store, state, rows, S.shard_dir(store)).name] if state.n else []
            copied = replace(state, shards=names, segments=segments_of(0 * rows, rows))
            crash_point("upgrade-copied")
            try:
                check_rows(store, copied)  # ids unique: refused before the commit
            except StoreError:
                for name in copied.shards:
                    (S.shard_dir(store) / name).unlink(missing_ok=True)
                raise
            state = copied
        else:
            check_rows(store, state)
        write_index(store, state, operation="upgrade")
    return True


def _old_state(f: h5py.File, store: Path) -> State:
    """The state an older layout's index describes (labels and split in the index)."""
    n = int(f[S.LABELS].shape[0])
    shards = [S.as_text(v) for v in f[f"{S.META}/shards"][...]] if S.META in f else [S.SELF]
    if shards == [S.SELF]:
        segments = segments_of(np.zeros(n, np.int64), np.arange(n))
    else:
        segments = f[f"{S.META}/rowmap"][...].astype(np.int64).reshape(-1, 4)
    return State(shards=shards, segments=segments, labels=f[S.LABELS][...].astype(np.int64),
                 split=f[S.SPLIT][...].astype("S8"), **index_parts(f))  # fmt: skip


def _unhashed(f: h5py.File) -> bool:
    return S.ID_HASH not in f
