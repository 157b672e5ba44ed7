"""What every change of a store starts with, under the writer lock: the state, cleaned,
and its rows found by id (what a commit and the extract planner look up).

with WriterLock(store) as lock:
    state = prepare(store, lock)     # None: no store yet
    rows = RowLookup(store, state).rows(id_hashes(ids))   # -1 where the id is new
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from embedkit.errors import StoreError, StoreMismatchError
from embedkit.store import format as S
from embedkit.store.files.integrity import checksum_problem, debris, no_store
from embedkit.store.files.shards import open_existing
from embedkit.store.read.idindex import IdIndex
from embedkit.store.read.state import State, load_state, read_array
from embedkit.store.txn.index import write_view
from embedkit.store.txn.lock import WriterLock, now


def prepare(
    store, lock: WriterLock, *, fingerprint: S.Fingerprint | None = None, required=False
) -> State | None:
    """Under ``lock``: the state (None: no store yet, refused when ``required``), checked
    against ``fingerprint`` when given, the index brought up to its newest version,
    temporary files removed. An older layout is refused (``store upgrade``)."""
    assert lock._lock is not None, "prepare() needs the writer lock"
    store = Path(store)
    state = load_state(store)
    if state is None and required:
        raise StoreError(no_store(store))
    if state is not None:
        if fingerprint is not None:
            check_fingerprint(state.fingerprint, fingerprint, store)
        problem = checksum_problem(store)
        if problem is not None:
            raise StoreError(
                f"{store}: the index file: {problem}; run `embedkit store verify {store} "
                "--repair` before writing"
            )
        latest = max(S.versions(store), default=0)
        if latest > int(state.attrs.get("version", 0)):  # killed between version and view
            write_view(store, latest)
            state = load_state(store)
    clean_debris(store)
    return state


def clean_debris(store) -> list[Path]:
    """Remove the temporary files killed writers left (``NAME.tmp-PID``).

    Shards and column files stay, named by a version or not: only ``store vacuum``
    removes them, so no reader of any version ever finds one gone.
    """
    removed = debris(store)
    for path in removed:
        with contextlib.suppress(OSError):
            path.unlink()
    return removed


def prune(state: State) -> State:
    """Drop shards no row refers to any more, renumbering the rowmap."""
    used = np.unique(state.segments[:, 0])
    if len(used) == len(state.shards):
        return state
    remap = np.full(len(state.shards), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    seg = state.segments.copy()
    seg[:, 0] = remap[seg[:, 0]]
    return replace(state, shards=[state.shards[i] for i in used.tolist()], segments=seg)


def empty_state(fingerprint: S.Fingerprint, started: str | None) -> State:
    return State(
        fingerprint=fingerprint,
        shards=[],
        segments=np.zeros((0, 4), np.int64),
        labels=np.zeros(0, np.int64),
        split=np.zeros(0, "S8"),
        label_names=[],
        attrs={"created": started or now()},
    )


def check_fingerprint(stored: S.Fingerprint, given: S.Fingerprint, where) -> None:
    field = stored.first_difference(given)
    if field is not None:
        raise StoreMismatchError(str(where), field, getattr(stored, field), getattr(given, field))


class RowLookup:
    """Find store rows by id in O(log N) numpy steps, from the shards' id hashes.

    Uses the :class:`~embedkit.store.read.idindex.IdIndex` the checks on open built (else reads
    the 16-byte id hashes itself); digests are read only for the rows asked. No per-row
    Python objects, so planning and committing a few new rows stays cheap however big
    the store is.
    """

    def __init__(self, store, state: State | None):
        self._store, self._state = store, state
        if state is None or state.n == 0:
            self._index = IdIndex(np.zeros(0, "S16"))
        elif state.id_index is not None and len(state.id_index.hashes) == state.n:
            self._index = state.id_index
        else:
            self._index = IdIndex(read_array(store, state, lambda f: f[S.ID_HASH][...]))

    def digests(self, rows: np.ndarray) -> np.ndarray:
        """(k,) S64 content digests of store ``rows``, read from their shards only."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype="S64")
        if not len(rows):
            return out
        shard, src = self._state.rows_of()
        for k in np.unique(shard[rows]).tolist():
            mine = np.flatnonzero(shard[rows] == k)
            at = src[rows[mine]]
            order = np.argsort(at)  # h5py reads increasing, distinct rows
            wanted, back = np.unique(at[order], return_inverse=True)
            with open_existing(self._store, self._state.shards[k]) as f:  # many rows: read all
                got = f[S.DIGESTS][...][wanted] if len(wanted) > 1024 else f[S.DIGESTS][wanted]
            out[mine[order]] = np.asarray(got, dtype="S64")[back]
        return out

    def rows(self, hashes: np.ndarray) -> np.ndarray:
        """Store row of each id hash, -1 where the id is not in the store."""
        return self._index.rows(hashes)
