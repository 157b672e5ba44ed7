"""Finding store rows by id: what a commit and the extract planner look up.

known = RowLookup(store, state)
rows = known.rows(id_hashes(ids))        # -1 where the id is new
"""

from __future__ import annotations

import numpy as np

from embedkit.store import format as S
from embedkit.store.files.shards import open_existing
from embedkit.store.read.idindex import IdIndex
from embedkit.store.read.state import State, read_array


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
