"""Converting old layouts: ``embedkit store upgrade STORE``."""

from __future__ import annotations

from embedkit.errors import StoreError
from embedkit.store.read.state import load_state
from embedkit.store.txn.begin import prepare
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock


def upgrade(store, *, timeout: float = LOCK_TIMEOUT) -> bool:
    """Convert a schema-1 (or packed) store into schema 2 in place; False if nothing to do."""
    with WriterLock(store, timeout=timeout, what="upgrading") as lock:
        state = load_state(store)
        if state is None:
            raise StoreError(f"{store}: no such store; create it with `embedkit extract`")
        was = state.self_contained
        prepare(store, lock)
        return was
