"""Store v2 benchmarks: read speed vs an npy memmap, commit cost vs store size, and the
fault battery (concurrent writers, readers during commits, SIGKILLs).

    python benchmarks/bench_store.py reads --mb 20 200 2000 --shards 1 50
    python benchmarks/bench_store.py commit --rows 100000 400000 1600000 --dim 1280 [--labelled]
    python benchmarks/bench_store.py faults --writer-trials 50 --split-trials 20 --kills 20

Each section prints and records (results/store.jsonl) one record per measurement; ratios
are measured side by side in one run, from a warm page cache. Everything is written under
--tmp and removed afterwards. Run from the repository root with ``PYTHONPATH=$PWD`` (or the
package installed); the store client run in subprocesses is the fault tests'
``tests/store/_worker.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _harness import Records, data_table, measured_line

from embedkit.store import (
    BatchShards,
    FeatureStore,
    Fingerprint,
    PendingRows,
    StoreWriter,
    TapInfo,
    commit_shards,
    write_shard,
)

HERE = Path(__file__).resolve().parent
WORKER = HERE.parent / "tests" / "store" / "_worker.py"  # the store client of the fault tests
sys.path.insert(0, str(HERE.parent))
from tests.store import _worker as W  # noqa: E402

KEY = ("section", "mb", "shards", "rows", "dim", "labelled", "direct", "base_rows", "trials")


def emit(rec: dict) -> None:
    """Print one measurement and record it (results/store.jsonl)."""
    print(json.dumps(rec), flush=True)
    Records("store").add({k: rec[k] for k in KEY if k in rec}, rec)


def render(records: list[dict]) -> str:
    """One table per section of the measurements (run_all.py --render calls this)."""
    sections = dict.fromkeys(r["section"] for r in records)
    parts = [f"### {s}: measurements\n\n" + data_table([r for r in records if r["section"] == s])
             for s in sections]  # fmt: skip
    return "\n\n".join([*parts, measured_line(records[-1])])


def _fp(dim: int) -> Fingerprint:
    return Fingerprint.create("bench", [TapInfo("pool", (dim,))], {"kind": "bench"})


def _build(store: Path, X: np.ndarray, n_shards: int) -> None:
    fp = _fp(X.shape[1])
    bounds = np.linspace(0, len(X), n_shards + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        ids = [f"r{i}" for i in range(lo, hi)]
        path = write_shard(store.parent / "in", fp, ids, [f"{i:064d}" for i in range(lo, hi)],
                           {"pool": X[lo:hi]})  # fmt: skip
        commit_shards(store, [path], fp)
        path.unlink()


def _best(fn, reps: int = 5) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _pair(baseline, candidate, reps: int = 7, sample_s: float = 0.1) -> tuple[float, float]:
    """Seconds per call, best of ``reps`` for each, run alternately so that load on the
    machine hits both. Each sample repeats a call that is shorter than ``sample_s`` often
    enough to last about that long (a 2 ms call is otherwise at the mercy of one
    scheduler tick)."""
    k = max(1, int(sample_s / max(_best(baseline, 1), _best(candidate, 1), 1e-6)))
    a, b = [], []
    for _ in range(reps):
        a.append(_best(lambda: [baseline() for _ in range(k)], 1) / k)
        b.append(_best(lambda: [candidate() for _ in range(k)], 1) / k)
    return min(a), min(b)


def bench_reads(args) -> None:
    for mb in args.mb:
        n = int(mb * 1e6 / (args.dim * 4))
        X = np.random.default_rng(0).normal(size=(n, args.dim)).astype(np.float32)
        for shards in args.shards:
            root = Path(tempfile.mkdtemp(dir=args.tmp))
            np.save(root / "x.npy", X)
            _build(root / "s.h5", X, shards)
            mm = np.load(root / "x.npy", mmap_mode="r")

            def npy_batches(mm=mm):  # what a user writes over an npy memmap
                perm = np.random.default_rng(1).permutation(len(mm))
                for lo in range(0, len(perm), 256):
                    yield mm[perm[lo : lo + 256]]

            def npy_epoch():
                for _ in npy_batches():
                    pass

            with FeatureStore(root / "s.h5") as fs:
                assert fs.n_shards == shards
                fs.features()  # warm the page cache for both
                np.array(mm)

                def store_epoch(fs=fs):
                    for _ in fs.iter_batches(256, shuffle=True, seed=1, labels=False):
                        pass

                npy_f, store_f = _pair(lambda mm=mm: np.array(mm), fs.features)
                npy_e, store_e = _pair(npy_epoch, store_epoch)
                rec = {
                    "section": "reads", "mb": mb, "rows": n, "shards": shards,
                    "npy_features_s": npy_f, "store_features_s": store_f,
                    "npy_epoch_s": npy_e, "store_epoch_s": store_e,
                }  # fmt: skip
            rec["features_ratio"] = rec["npy_features_s"] / rec["store_features_s"]
            rec["epoch_ratio"] = rec["npy_epoch_s"] / rec["store_epoch_s"]
            emit(rec)
            shutil.rmtree(root)


def _tags(start: int, n: int, labelled: bool) -> tuple[list, list]:
    """Labels (10 classes) and splits (80% train, 20% test) of rows ``start:start+n``, as a
    real store has them; all None for an unlabelled store."""
    if not labelled:
        return [None] * n, [None] * n
    rng = np.random.default_rng(start)
    labels = [f"c{k}" for k in rng.integers(0, 10, n).tolist()]
    splits = ["test" if u < 0.2 else "train" for u in rng.random(n).tolist()]
    return labels, splits


def _extract_rows(
    store: Path,
    X: np.ndarray,
    start: int,
    batch: int = 256,
    direct: bool = True,
    labelled: bool = False,
) -> float:
    """The extract path: journal batches under the lock, then one commit. Seconds.

    ``direct``: the journal is one pending shard (what ``embedkit extract`` does); else one
    shard per batch, merged by the commit (the scale-out path's journal).
    """  # fmt: skip
    fp = _fp(X.shape[1])
    ids = [f"r{i}" for i in range(start, start + len(X))]
    digests = [f"{i:064d}" for i in range(start, start + len(X))]
    labels, splits = _tags(start, len(X), labelled)
    t = time.perf_counter()
    with StoreWriter(store, fp) as w:
        todo = w.plan(ids, digests)
        todo_ids = [ids[i] for i in todo]
        w.begin(
            PendingRows(todo_ids, batch, digests=[digests[i] for i in todo],
                        labels=[labels[i] for i in todo], splits=[splits[i] for i in todo])
            if direct else BatchShards(todo_ids, batch)
        )  # fmt: skip
        for b, lo in enumerate(range(0, len(todo), batch)):
            pos = todo[lo : lo + batch]
            w.write_batch(b, [ids[i] for i in pos], [digests[i] for i in pos],
                          [labels[i] for i in pos], [splits[i] for i in pos],
                          {"pool": X[pos]})  # fmt: skip
        w.commit()
    return time.perf_counter() - t


def _du(*paths: Path) -> int:
    """Bytes allocated on disk under ``paths`` (sparse files as allocated, links once)."""
    seen, total = set(), 0
    for path in paths:
        # os.walk skips folders removed while it runs (a commit drops the journal)
        walked = [Path(d) / f for d, _, files in os.walk(path) for f in files]
        for p in [path, *walked] if path.is_dir() else [path]:
            with contextlib.suppress(OSError):
                st = p.lstat()
                if p.is_file() and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


class _PeakDisk:
    """The most bytes ``paths`` held while active: sampled every millisecond in a thread
    and right before every ``os.replace``/``os.unlink``/``os.link`` (the steps of a commit)."""

    def __init__(self, *paths: Path):
        self.paths, self.peak, self._stop = paths, 0, threading.Event()

    def sample(self) -> None:
        self.peak = max(self.peak, _du(*self.paths))

    def __enter__(self) -> _PeakDisk:
        self._saved = {name: getattr(os, name) for name in ("replace", "unlink", "link")}
        for name, fn in self._saved.items():
            setattr(os, name, self._wrap(fn))
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _wrap(self, fn):
        def wrapped(*a, **k):
            self.sample()
            return fn(*a, **k)

        return wrapped

    def _loop(self) -> None:
        while not self._stop.wait(0.001):
            self.sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for name, fn in self._saved.items():
            setattr(os, name, fn)
        self.sample()


def bench_commit(args) -> None:
    for rows in args.rows:
        root = Path(tempfile.mkdtemp(dir=args.tmp))
        store = root / "s.h5"
        step = 100_000
        rng = np.random.default_rng(0)
        for lo in range(0, rows, step):  # the base store, in 100k-row shards
            part = rng.normal(size=(min(step, rows - lo), args.dim))
            _build_part(store, part, lo, args.labelled)
        new = rng.normal(size=(rows // 100, args.dim)).astype(np.float32)
        lab = args.labelled
        fresh = _best(
            lambda r=root, x=new, n=rows, lab=lab: _fresh(r, x, n, lab), reps=max(2, args.reps)
        )
        for direct in (True, False)[: 2 - args.pending_only]:
            recs = [_add_once(root, store, new, rows, direct, args) for _ in range(args.reps)]
            rec = min(recs, key=lambda r: r["add_to_store_s"])  # best of --reps
            rec.update(new_store_s=fresh, ratio=rec["add_to_store_s"] / fresh, reps=args.reps)
            rec["peak_extra_mb"] = max(r["peak_extra_mb"] for r in recs)
            rec["peak_over_new_rows"] = max(r["peak_over_new_rows"] for r in recs)
            emit(rec)
        shutil.rmtree(root)


def _add_once(root: Path, store: Path, new: np.ndarray, rows: int, direct: bool, args) -> dict:
    """Add ``new`` to a copy of the base store (hard links: the same shard files)."""
    shutil.copytree(f"{store}.d", root / "c.h5.d", copy_function=os.link)
    os.link(store, root / "c.h5")
    copy, folder = root / "c.h5", root / "c.h5.d"
    before = _du(copy, folder)
    with _PeakDisk(copy, folder) as meter:
        add = _extract_rows(copy, new, rows, direct=direct, labelled=args.labelled)
    after = _du(copy, folder)
    with FeatureStore(copy) as fs:
        shard = max((folder / "shards" / n).stat().st_size for n in fs._state.shards[-1:])
    shutil.rmtree(folder)
    copy.unlink()
    return {
        "section": "commit", "rows": rows, "dim": args.dim, "new_rows": len(new),
        "journal": "pending shard" if direct else "batch shards", "labelled": args.labelled,
        "new_rows_mb": new.nbytes / 1e6, "new_shard_mb": shard / 1e6,
        "store_mb": before / 1e6, "add_to_store_s": add,
        "extra_after_mb": (after - before) / 1e6,
        "peak_extra_mb": (meter.peak - before) / 1e6,
        "peak_over_new_rows": (meter.peak - before) / new.nbytes,
        "peak_excess_pct_of_store": 100 * (meter.peak - before - new.nbytes) / before,
    }  # fmt: skip


def _fresh(root: Path, new: np.ndarray, start: int, labelled: bool = False) -> float:
    """The same rows into a new store."""
    shutil.rmtree(root / "n", ignore_errors=True)
    (root / "n").mkdir()
    return _extract_rows(root / "n" / "s.h5", new, start, labelled=labelled)


def _build_part(store: Path, X: np.ndarray, lo: int, labelled: bool = False) -> None:
    fp = _fp(X.shape[1])
    ids = [f"r{i}" for i in range(lo, lo + len(X))]
    labels, splits = _tags(lo, len(X), labelled)
    path = write_shard(store.parent / "in", fp, ids, [f"{i:064d}" for i in range(lo, lo + len(X))],
                       {"pool": X.astype(np.float32)}, labels=labels, splits=splits)  # fmt: skip
    commit_shards(store, [path], fp)
    path.unlink()


def _worker(*args, env=None) -> subprocess.Popen:
    environ = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)],
                            env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip


def _count(store: Path) -> tuple[int, int]:
    with FeatureStore(store) as fs:
        return len(set(fs.ids().tolist())), W.check(fs)


def bench_faults(args) -> None:
    root = Path(tempfile.mkdtemp(dir=args.tmp))
    base = root / "base.h5"
    W.add(base, 0, args.base_rows)
    lost = refused = 0
    for trial in range(args.writer_trials + args.split_trials):
        store = root / f"t{trial}.h5"
        shutil.copytree(f"{base}.d", f"{store}.d")
        shutil.copy(base, store)
        n = args.base_rows
        if trial < args.writer_trials:
            procs = [_worker("add", store, n, 500), _worker("extract", store, n + 500, 500, 64)]
        else:
            procs = [_worker("extract", store, n, 1000, 64)]
            cmd = [sys.executable, "-m", "embedkit", "split", str(store), "--force"]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE))  # fmt: skip
        codes = [p.wait() for p in procs]
        refused += sum(c != 0 for c in codes)
        expected = n + 1000 if trial < args.writer_trials else n + 1000
        got, wrong = _count(store)
        lost += (expected - got) if codes[0] == 0 else 0
        assert wrong == 0
        shutil.rmtree(f"{store}.d")
        store.unlink()
    emit({"section": "writers", "base_rows": args.base_rows,
          "writer_trials": args.writer_trials, "split_trials": args.split_trials,
          "rows_lost": lost, "runs_refused_cleanly": refused})  # fmt: skip
    store = root / "r.h5"
    W.add(store, 0, 20_000)
    readers = [_worker("poll", store, 20) for _ in range(4)]
    for k in range(20):
        W.add(store, 20_000 + 500 * k, 500) if k % 2 else W.add(store, 100 * k, 100, k + 1)
    stats = [json.loads(p.communicate()[0]) for p in readers]
    emit({"section": "readers", "readers": 4, "commits": 20, "stats": stats})
    kills = {"random": 0, "named": 0, "identical": 0, "leftovers": 0}
    ref = root / "ref.h5"
    W.add(ref, 0, 2000)
    W.extract(ref, 0, 6000, 100)
    with FeatureStore(ref) as fs:
        ref_x = fs.features()
    steps = ["batch-3", "shards-written", "index-written", "before-journal-removed", "batch-30"]
    timed = root / "timed.h5"  # how long one uninterrupted run takes, start-up included
    W.add(timed, 0, 2000)
    t = time.perf_counter()
    assert _worker("extract", timed, 0, 6000, 100).wait() == 0
    run_s = time.perf_counter() - t
    for trial in range(args.kills + len(steps)):
        store = root / f"k{trial}.h5"
        W.add(store, 0, 2000)
        named = trial >= args.kills
        env = {"EMBEDKIT_TEST_CRASH_AT": steps[trial - args.kills]} if named else None
        p = _worker("extract", store, 0, 6000, 100, env=env)
        if not named:
            time.sleep(random.Random(trial).uniform(0.3, 0.98) * run_s)  # mostly after start-up
            p.send_signal(signal.SIGKILL)
        p.wait()
        kills["named" if named else "random"] += p.returncode == -signal.SIGKILL
        assert _worker("extract", store, 0, 6000, 100).wait() == 0
        with FeatureStore(store) as fs:
            kills["identical"] += bool(np.array_equal(fs.features(), ref_x))
            live = set(fs._state.shards) | {name for name, _ in fs._state.pieces or []}
        folder = Path(f"{store}.d")
        extra = [p for p in folder.rglob("*") if p.is_file() and p.name not in live | {"lock"}]
        kills["leftovers"] += len(extra)
        shutil.rmtree(folder)
        store.unlink()
    emit({"section": "kills", "trials": args.kills + len(steps), "run_s": run_s, **kills})
    shutil.rmtree(root)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("section", choices=["reads", "commit", "faults"])
    p.add_argument("--tmp", default=tempfile.gettempdir())
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--mb", type=float, nargs="+", default=[20, 200, 2000])
    p.add_argument("--shards", type=int, nargs="+", default=[1, 50])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 400_000, 1_600_000])
    p.add_argument("--writer-trials", type=int, default=50)
    p.add_argument("--split-trials", type=int, default=20)
    p.add_argument("--base-rows", type=int, default=300_000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--reps", type=int, default=1, help="commit: best of this many adds")
    p.add_argument(
        "--labelled",
        action="store_true",
        help="commit: 10-class labels and train/test splits on every row",
    )
    p.add_argument(
        "--pending-only",
        action="store_true",
        help="commit: only the pending-shard journal (what extract uses)",
    )
    args = p.parse_args()
    {"reads": bench_reads, "commit": bench_commit, "faults": bench_faults}[args.section](args)


if __name__ == "__main__":
    main()
