"""The one writer lock of a store, and the test hook that kills a writer at a named step.

with WriterLock("feats.h5", timeout=10):
    ...   # read the state, change it, replace the index
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
from pathlib import Path

from filelock import FileLock, Timeout

from embedkit.errors import StoreError
from embedkit.store import format as S

LOCK_TIMEOUT = 10.0  # seconds a writer waits for another one before it gives up
_CRASH_ENV = "EMBEDKIT_TEST_CRASH_AT"  # test hook: SIGKILL ourselves at a named step


class WriterLock:
    """The one writer lock of a store (``STORE.d/lock``), with the holder's pid beside it.

    The OS releases the lock when its holder dies, so a killed writer never blocks the next
    one; the pid file it leaves is overwritten by the next holder.
    """

    def __init__(self, store, *, timeout: float = LOCK_TIMEOUT, what: str = "writing"):
        self.store, self.timeout, self.what = Path(store), float(timeout), what
        self._lock: FileLock | None = None

    def acquire(self) -> WriterLock:
        folder = S.sidecar(self.store)
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / S.LOCK, timeout=self.timeout, preserve_lock_file=True)
        try:
            lock.acquire()
        except Timeout:
            raise StoreError(
                f"{self.store}: another embedkit process ({_holder(folder / S.LOCK_INFO)}) "
                f"is writing this store; waited {self.timeout:g} s; re-run when it has finished"
            ) from None
        self._lock = lock
        info = json.dumps({"pid": os.getpid(), "what": self.what, "since": now()})
        with contextlib.suppress(OSError):
            (folder / S.LOCK_INFO).write_text(info)
        return self

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (S.sidecar(self.store) / S.LOCK_INFO).unlink()
            self._lock.release()
            self._lock = None

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text())
        return f"pid {info['pid']}, {info['what']} since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "pid unknown"


def now() -> str:
    """The time now in UTC, to the second (ISO 8601)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def crash_point(step: str) -> None:
    """Test hook: ``EMBEDKIT_TEST_CRASH_AT=step`` kills this process at ``step``."""
    if os.environ.get(_CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
