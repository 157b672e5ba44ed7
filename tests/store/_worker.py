"""A store client run as a real subprocess by the store fault tests and bench_store.py.

    python -m tests.store._worker add STORE START N [VERSION]   # commit_shards
    python -m tests.store._worker extract STORE START N BATCH    # StoreWriter + journal
    python -m tests.store._worker compact STORE
    python -m tests.store._worker poll STORE SECONDS             # a reader; prints JSON

Row ``k`` holds id ``i{k:07d}`` and features ``k + version / 100`` (every column; versions
below 100), so a wrong row is visible from the data alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from embedkit.store import (
    FeatureStore,
    Fingerprint,
    PendingRows,
    StoreWriter,
    TapInfo,
    commit_shards,
    compact,
    write_shard,
)

DIM = int(os.environ.get("STORE_WORKER_DIM", "8"))
FP = Fingerprint.create("arrays", [TapInfo("pool", (DIM,))], {"kind": "worker"})


def rows(start: int, n: int, version: int = 0):
    ids = [f"i{k:07d}" for k in range(start, start + n)]
    x = np.repeat(np.arange(start, start + n, dtype=np.float32)[:, None], DIM, 1) + version / 100
    digests = [f"{k + 10_000_000 * version:064d}" for k in range(start, start + n)]
    labels = [["a", "b", "c"][k % 3] for k in range(start, start + n)]
    return ids, digests, x, labels


def add(store: Path, start: int, n: int, version: int = 0, timeout: float = 60) -> None:
    ids, digests, x, labels = rows(start, n, version)
    folder = store.parent / f"incoming-{os.getpid()}"
    path = write_shard(folder, FP, ids, digests, {"pool": x}, labels=labels)
    commit_shards(store, [path], FP, timeout=timeout)
    path.unlink()
    folder.rmdir()


def extract(store: Path, start: int, n: int, batch: int, hook=None) -> None:
    """The extract path; ``hook(step)`` runs before each batch (its number) and "commit"."""
    hook = hook or (lambda step: None)
    ids, digests, x, labels = rows(start, n)
    with StoreWriter(store, FP, timeout=60) as w:
        todo = w.plan(ids, digests)
        pick = [ids[i] for i in todo], [digests[i] for i in todo], [labels[i] for i in todo]
        done = w.begin(PendingRows(pick[0], batch, digests=pick[1], labels=pick[2]))
        for b, lo in enumerate(range(0, len(todo), batch)):
            if b not in done:
                hook(b)
                pos = todo[lo : lo + batch]
                w.write_batch(
                    b,
                    [ids[i] for i in pos],
                    [digests[i] for i in pos],
                    [labels[i] for i in pos],
                    None,
                    {"pool": x[pos]},
                )
        hook("commit")
        w.commit()


def check(fs: FeatureStore) -> int:
    """Rows whose features do not belong to their id."""
    ids = np.asarray([int(i[1:]) for i in fs.ids()])
    x = fs.features()
    return int((np.floor(x[:, 0] + 1e-3).astype(np.int64) != ids).sum())


def poll(store: Path, seconds: float) -> dict:
    out = {"reads": 0, "wrong": 0, "changed_without_refresh": 0, "refreshes": 0, "views": 0}
    fs = FeatureStore(store)
    seen = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or out["reads"] < 6:
        n, x0 = len(fs), fs.features()
        out["wrong"] += check(fs)
        if len(fs) != n or not np.array_equal(fs.features(), x0):
            out["changed_without_refresh"] += 1
        out["reads"] += 1
        seen.add(n)
        if out["reads"] % 3 == 0:
            fs.refresh()
            out["refreshes"] += 1
    fs.close()
    out["views"] = len(seen)
    return out


def main(argv: list[str]) -> None:
    action, store, *rest = argv
    store = Path(store)
    if action == "add":
        add(store, *map(int, rest))
    elif action == "extract":
        extract(store, *map(int, rest))
    elif action == "compact":
        compact(store, timeout=60)
    elif action == "poll":
        print(json.dumps(poll(store, float(rest[0]))))
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
