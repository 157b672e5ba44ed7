"""What every change of a store starts with, under the writer lock: the state, cleaned.

with WriterLock(store) as lock:
    state = prepare(store, lock)     # None: no store yet
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from embedkit.errors import StoreError, StoreMismatchError
from embedkit.store import format as S
from embedkit.store.files.integrity import checksum_problem, debris, no_store
from embedkit.store.read.state import State, load_state
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
    used = np.unique(state.segments[:, 0]) if len(state.segments) else np.zeros(0, np.int64)
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
