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
from embedkit.store.read.state import (
    State,
    index_parts,
    open_index,
    read_state,
)
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
        unhashed = _unhashed_shards(store, state)  # a current index may name such shards too
        if current and not unhashed:
            prepare(store, lock)
            return False
        for problem in value_problems(store, state):  # labels and splits the rows keep
            raise StoreError(problem)
        if state.shards == [S.SELF] or unhashed:
            copied = _copy_rows(store, state)
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
        segments = np.asarray([[0, 0, 0, n]] if n else np.zeros((0, 4)), dtype=np.int64)
    else:
        segments = f[f"{S.META}/rowmap"][...].astype(np.int64).reshape(-1, 4)
    return State(shards=shards, segments=segments, labels=f[S.LABELS][...].astype(np.int64),
                 split=f[S.SPLIT][...].astype("S8"), **index_parts(f))  # fmt: skip


def _unhashed_shards(store: Path, state: State) -> list[str]:
    """Shards without id hashes (schema-1 files an older upgrade linked in as they were)."""
    unhashed = lambda f: S.ID_HASH not in f  # noqa: E731
    return [n for n in state.shards if n != S.SELF and read_shard(store, n, unhashed)]


def _copy_rows(store: Path, state: State) -> State:
    """Every row copied, in order, into one new shard (with id hashes and a checksum)."""
    if not state.n:
        return replace(state, shards=[], segments=np.zeros((0, 4), np.int64))
    rows = np.arange(state.n)
    path = copy_rows(store, state, rows, S.shard_dir(store))
    return replace(state, shards=[path.name], segments=np.asarray([[0, 0, 0, state.n]]))
