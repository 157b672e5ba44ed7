"""What every change of a store starts with, under the writer lock: the state, cleaned.

with WriterLock(store) as lock:
    state = prepare(store, lock)     # None: no store yet
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from embedkit.errors import StoreError, StoreMismatchError
from embedkit.files import TEMP
from embedkit.store import format as S
from embedkit.store.files.integrity import checksum_problem, copy_is_current, keep_copy
from embedkit.store.files.place import place
from embedkit.store.format import column_dir, shard_dir, sidecar
from embedkit.store.read.state import State, load_state
from embedkit.store.txn.index import write_index
from embedkit.store.txn.lock import WriterLock, crash_point


def prepare(store, lock: WriterLock) -> State | None:
    """Under ``lock``: clean debris, upgrade a one-file store, and return the state."""
    assert lock._lock is not None, "prepare() needs the writer lock"
    store = Path(store)
    state = load_state(store)
    if state is not None and not state.self_contained:
        problem = checksum_problem(store)
        if problem is not None:
            raise StoreError(
                f"{store}: the index file: {problem}; run `embedkit store verify {store} "
                "--repair` before writing"
            )
        if not copy_is_current(store):  # a writer killed between the index and its copy
            keep_copy(store)
    clean_debris(store, state)
    if state is not None and state.self_contained and state.n:
        state = _upgrade(store, state)
    return state


def clean_debris(store, state: State | None) -> list[Path]:
    """Remove what killed writers left: temporary files, shards and column files no index
    refers to."""
    store = Path(store)
    removed = list(store.parent.glob(f"{store.name}{TEMP}*"))  # schema-1 commits
    folder = sidecar(store)
    if folder.is_dir():
        removed += [p for p in folder.rglob(f"*{TEMP}*") if p.is_file()]
        live = set(state.shards) if state is not None else set()
        if shard_dir(store).is_dir():
            removed += [p for p in shard_dir(store).iterdir() if p.name not in live]
        pieces = {name for name, _ in state.pieces or []} if state is not None else set()
        if column_dir(store).is_dir():
            removed += [p for p in column_dir(store).iterdir() if p.name not in pieces]
    for path in removed:
        with contextlib.suppress(OSError):
            path.unlink()
    return removed


def _upgrade(store: Path, state: State) -> State:
    """Turn a one-file store into index + one shard (a hard link to the same bytes)."""
    name = f"{state.fingerprint.digest[:16]}-{os.stat(store).st_ino:x}.h5"
    shard_dir(store).mkdir(parents=True, exist_ok=True)
    place(store, shard_dir(store) / name)
    crash_point("upgrade-linked")
    new = replace(state, shards=[name])
    write_index(store, new, {name: state.n})
    return new


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


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
