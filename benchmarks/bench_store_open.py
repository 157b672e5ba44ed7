"""What the structural checks cost when a store is opened (``FeatureStore(path)``).

    PYTHONPATH=$PWD python benchmarks/bench_store_open.py --rows 1600000 --dim 16 --shards 1 16

``--dir D --build-only`` builds the stores into ``D`` (kept); a later run with ``--dir D``
only measures.

For each store (1 and 16 shards; older layouts such as schema 1 are no longer read on
open, only by ``embedkit store upgrade``), opening and closing it is timed with the checks
(``embedkit.store.read.checks``) and with them replaced by no-ops, alternately, best of
``--reps`` each; one record per store (results/store_open.jsonl). The checks read the
index metadata, labels and splits (read anyway), each shard's metadata and the 16-byte id
hashes, never a feature array.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import Records, data_table, measured_line

from embedkit.store import FeatureStore, Fingerprint, TapInfo, commit_shards
from embedkit.store.files.shards import write_shard
from embedkit.store.read import reader, state
from embedkit.store.read.rowchecks import check_rows


def _build(store: Path, n: int, dim: int, n_shards: int) -> None:
    fp = Fingerprint.create("bench", [TapInfo("pool", (dim,))], {"kind": "bench"})
    X = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    labels = [str(i % 10) for i in range(n)]
    bounds = np.linspace(0, n, n_shards + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ids = [f"r{i}" for i in range(lo, hi)]
        digests = [f"{i:064d}" for i in range(lo, hi)]
        path = write_shard(store.parent / "in", fp, ids, digests, {"pool": X[lo:hi]},
                           labels=labels[lo:hi])  # fmt: skip
        commit_shards(store, [path], fp)
        path.unlink()


def _open(path: Path) -> float:
    t = time.perf_counter()
    FeatureStore(path).close()
    return time.perf_counter() - t


def _unchecked(path: Path) -> float:
    saved = reader.check_rows, state.check_rows, state.check_index
    reader.check_rows = state.check_rows = state.check_index = lambda *a, **k: None
    try:
        return _open(path)
    finally:
        reader.check_rows, state.check_rows, state.check_index = saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_600_000)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--shards", type=int, nargs="+", default=[1, 16])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--dir", help="build the stores here and keep them (default: a temp dir)")
    p.add_argument("--build-only", action="store_true", help="build the stores and stop")
    args = p.parse_args()
    root = Path(args.dir or tempfile.mkdtemp())
    root.mkdir(parents=True, exist_ok=True)
    stores = [(f"v2, {k} shard(s)", root / f"s{args.rows}-{k}.h5") for k in args.shards]
    try:
        for (_, path), k in zip(stores, args.shards):
            if not path.exists():
                _build(path, args.rows, args.dim, k)
        if not args.build_only:
            for name, path in stores:
                _measure(name, path, args)
    finally:
        if not args.dir:
            shutil.rmtree(root)


def _measure(name: str, path: Path, args) -> None:
    _open(path)  # warm the page cache
    checked, unchecked = [], []
    for _ in range(args.reps):
        unchecked.append(_unchecked(path))
        checked.append(_open(path))
    with FeatureStore(path) as fs:
        t = time.perf_counter()
        check_rows(path, fs._state, fs._handles)
        rows_s = time.perf_counter() - t
        n = len(fs)
    rec = {
        "store": name, "rows": n, "open_unchecked_s": min(unchecked),
        "open_checked_s": min(checked), "ratio": min(checked) / min(unchecked),
        "check_rows_s": rows_s,
    }  # fmt: skip
    print(json.dumps(rec), flush=True)
    Records("store_open").add({"store": name, "rows": n, "dim": args.dim}, rec)


def render(records: list[dict]) -> str:
    """The measurements as one table (run_all.py --render calls this)."""
    return (
        "### Store open: measurements\n\n"
        + data_table(records)
        + "\n\n"
        + measured_line(records[-1])
    )


if __name__ == "__main__":
    main()
