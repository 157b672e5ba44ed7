"""The Ray engine against a local extract, side by side; records in results/ray.jsonl.

    .venv/bin/python benchmarks/bench_ray.py                       # 10,000 images, Lite0
    .venv/bin/python benchmarks/bench_ray.py --images 300 --overhead-items 400   # short run

1. Throughput: Fashion-MNIST test images (uint8 28x28 .npy, resized to 224 RGB by the
   model's preprocessing) through EfficientNet-Lite0: ``extract`` in one process (ORT on
   all cores), then ``engine="ray"`` with 2 single-threaded actors and with 1, on one Ray
   session (``ray.init(num_cpus=2)``, started once and timed apart). The Ray store is
   compared with the local one, dataset by dataset.
2. A cost model, each term measured here: the actor's per-item cost (preprocessing and
   inference, one thread), Ray's per-batch cost (a tiny model at 3 batch sizes, 1 and 2
   actors, least squares), and the driver's serial costs per item: listing + hashing the
   source, and committing the journal (merging 32-row shards into the store).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _harness import Records
from _inputs import get_model

from embedkit.datasets import load_fashion_mnist
from embedkit.extract import extract, load_model, open_source
from embedkit.extract.worker import BatchWorker
from embedkit.store import Fingerprint, TapInfo, commit_shards, write_shard

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def ensure_ray() -> None:
    """The benchmark's Ray session: 2 CPUs, as on the CI machine type."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")


class CpuMeter:
    """CPU seconds used by this process and the Ray workers below it while the block runs
    (Linux /proc): on a shared machine, how much CPU a run actually got."""

    def __enter__(self) -> CpuMeter:
        self._stop = threading.Event()
        self._last: dict[int, int] = {}  # pid -> last seen utime + stime (ticks)
        self._first: dict[int, int] = {}
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid, ticks in _worker_ticks().items():
                self._first.setdefault(pid, ticks)
                self._last[pid] = ticks
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        ticks = sum(self._last[p] - self._first[p] for p in self._last)
        self.seconds = ticks / os.sysconf("SC_CLK_TCK")


def _worker_ticks() -> dict[int, int]:
    """utime + stime of this process and of the Ray actor processes (MapWorker)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            mine = int(entry) == os.getpid()
            if mine or b"MapWorker" in Path(f"/proc/{entry}/cmdline").read_bytes():
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                found[int(entry)] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return found


def same_store(a: Path, b: Path) -> bool:
    """Same ids and features (tests/extract/test_ray.py compares every dataset and attribute)."""
    from embedkit.store import FeatureStore

    with FeatureStore(a) as x, FeatureStore(b) as y:
        return np.array_equal(x.ids(), y.ids()) and np.array_equal(x.features(), y.features())


class Measurements:
    """One record per measurement (results/ray.jsonl); a measurement already recorded is
    not run again (unless ``fresh``), so an interrupted benchmark resumes."""

    def __init__(self, records: list[dict], fresh: bool = False):
        self.data = {r["key"]["measure"]: r for r in records if "measure" in r["key"]}
        self.fresh, self.done = fresh, set()

    def get(self, key: str, measure) -> dict:
        if key not in self.data or (self.fresh and key not in self.done):
            self.data[key] = RECORDS.add({"measure": key}, measure())
            self.done.add(key)
        return self.data[key]


RECORDS = Records("ray")


RUNS = {  # name -> extract options
    "local": {},
    "ray, 2 actors": {"engine": "ray", "workers": 2},
    "ray, 1 actor": {"engine": "ray", "workers": 1},
}


class Bench:
    """The model, the data and (started on first use) the Ray session of one benchmark."""

    def __init__(self, work: Path, n: int, batch: int):
        self.work, self.n, self.batch = work, n, batch
        self._model = None
        self.data = work / "fmnist.npy"
        images, _ = load_fashion_mnist(REPO / "data/fashion-mnist", "test")
        np.save(self.data, images[:n])

    @property
    def model(self) -> tuple[Path, str]:
        if self._model is None:
            self._model = get_model(self.work)
        return self._model

    def ray_startup(self) -> dict:
        t0 = time.perf_counter()
        ensure_ray()
        return {"seconds": time.perf_counter() - t0}

    def run(self, name: str, n: int | None = None, tag: str = "") -> dict:
        """One extract of the first ``n`` images (default all) into a new store."""
        n = n or self.n
        out = self.work / f"{name.replace(' ', '').replace(',', '-')}{tag}.h5"
        model, model_name = self.model
        ensure_ray()  # one session for all runs: its start-up is measured on its own
        with CpuMeter() as cpu:
            s = extract(model, self.data, out, batch_size=self.batch, progress=False, limit=n,
                        **RUNS[name])  # fmt: skip
        assert s.n_computed == n, s
        load = os.getloadavg()[0]
        print(f"{name}{tag}: {n / s.seconds:.1f} img/s ({s.seconds:.1f} s, load {load:.1f}, "
              f"{cpu.seconds / s.seconds:.2f} CPUs)", flush=True)  # fmt: skip
        return {"seconds": s.seconds, "items_per_s": n / s.seconds, "model": model_name,
                "load": load, "cpu_s": cpu.seconds}  # fmt: skip

    def identical(self) -> dict:
        stores = [self.work / f"{k}.h5" for k in ("ray-2actors", "local")]
        if not all(p.exists() for p in stores):  # runs from an earlier invocation
            for name in ("local", "ray, 2 actors"):
                self.run(name)
        return {"identical": same_store(*stores)}


def bench_item_costs(model: Path, data: Path, batch: int, n: int = 256) -> dict[str, float]:
    """CPU seconds per item in one actor (one thread): preprocessing, inference.

    CPU time of this thread (ORT with one intra-op thread runs in the caller), so the
    figures do not depend on how busy the shared machine is.
    """
    source = open_source(data)
    n = min(n, len(source.scan()))
    work = BatchWorker(load_model(model), source, device="cpu", dtype="float32", threads=1)
    rows = [np.arange(lo, min(lo + batch, n)) for lo in range(0, n, batch)]
    t0 = time.thread_time()
    feeds = [work.prepare(r)[2] for r in rows]
    prep = (time.thread_time() - t0) / n
    work.runner.run(feeds[0])  # warm-up
    t0 = time.thread_time()
    for feed in feeds:
        work.runner.run(feed)
    return {"preprocess": prep, "inference": (time.thread_time() - t0) / n, "clock": "cpu"}


def tiny_model(path: Path, dim: int = 6, out: int = 3) -> None:
    """A plain ONNX file: x (N, dim) @ W -> y (N, out); next to no compute per item."""
    from onnx import TensorProto, helper, numpy_helper, save

    w = np.random.default_rng(2).normal(size=(dim, out)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime this project supports reads
    save(model, str(path))


def tiny_run(work: Path, n: int, workers: int, batch: int) -> dict:
    """One Ray run of a tiny model (the per-batch cost dominates)."""
    model, data = work / "tiny.onnx", work / "tiny.npy"
    if not model.exists():
        tiny_model(model)
        np.save(data, np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32))
    out = work / f"tiny-{workers}-{batch}.h5"
    ensure_ray()
    s = extract(model, data, out, batch_size=batch, progress=False, engine="ray", workers=workers)
    return {"blocks": -(-n // batch), "seconds": s.seconds}


def block_fit(runs: list[dict]) -> tuple[float, float]:
    """Seconds per batch and fixed seconds per run, least squares over batch sizes."""
    per_block, fixed = np.polyfit([r["blocks"] for r in runs], [r["seconds"] for r in runs], 1)
    return float(per_block), float(fixed)


def bench_driver(work: Path, data: Path, n: int, batch: int, dim: int = 1280) -> dict[str, float]:
    """The driver's serial work per item: listing + hashing, and the commit."""
    t0 = time.perf_counter()
    open_source(data).scan()
    listing = (time.perf_counter() - t0) / n
    buf = os.urandom(64 << 20)
    t0 = time.perf_counter()
    hashlib.sha256(buf).hexdigest()
    hash_mb_s = 64 * 1.048576 / (time.perf_counter() - t0)
    commit = commit_cost(work, n, batch, dim)["commit"]
    return {"listing": listing, "hash_mb_s": hash_mb_s, "commit": commit, "row_mb": dim * 4 / 1e6}


def commit_cost(work: Path, n: int, batch: int, dim: int = 1280) -> dict[str, float]:
    """Seconds per item to commit ``n`` Lite0-sized rows journaled as ``batch``-row shards."""
    fp = Fingerprint.create("bench", [TapInfo("pool", (dim,))], {"kind": "bench"})
    X = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    folder = work / f"journal-{batch}"
    shards = [
        write_shard(folder, fp, [str(i) for i in range(lo, min(lo + batch, n))],
                    ["0" * 64] * len(X[lo : lo + batch]), {"pool": X[lo : lo + batch]})
        for lo in range(0, n, batch)
    ]  # fmt: skip
    t0 = time.perf_counter()
    commit_shards(work / f"commit-{batch}.h5", shards, fp)
    return {"commit": (time.perf_counter() - t0) / n}


def scaling(costs: dict, block: float, driver: dict, commit: float, batch: int, nodes: int):
    """Predicted items/s with ``nodes`` one-GPU nodes: the parallel part shrinks with the
    nodes, the driver's serial parts (listing, per-batch scheduling, commit) do not.

    A GPU actor preprocesses on its one CPU, so it is assumed preprocessing-bound
    (Lite0 inference on a GPU takes far less than the measured preprocessing).
    """
    actor = costs["preprocess"] + block / batch  # s per item in one GPU actor
    serial = driver["listing"] + commit  # s per item, before and after compute
    return 1 / (serial + max(actor / nodes, block / batch))


def rounds_table(args, rec: Measurements) -> list[str]:
    """Same-round ratios of interleaved shorter runs (the load drifts between long runs)."""
    per = [
        {
            name: rec.data[f"round {args.round_images}x{args.batch_size} r{r} {name}"]
            for name in RUNS
        }
        for r in range(args.rounds)
    ]
    vs_local = [r["ray, 2 actors"]["items_per_s"] / r["local"]["items_per_s"] for r in per]
    scaling = [r["ray, 2 actors"]["items_per_s"] / r["ray, 1 actor"]["items_per_s"] for r in per]
    cells = "; ".join(" / ".join(f"{r[name]['items_per_s']:.1f}" for name in RUNS) for r in per)
    loads = ", ".join(f"{r[name]['load']:.1f}" for r in per for name in RUNS)
    cpus = {name: [r[name]["cpu_s"] / r[name]["seconds"] for r in per] for name in RUNS}
    per_cpu = {name: [r[name]["items_per_s"] / c for r, c in zip(per, cpus[name])] for name in RUNS}
    return [
        f"The same three runs on {args.round_images:,} images, {args.rounds} interleaved "
        "rounds (order rotated each round), ratios taken within a round:",
        "",
        "| ratio | per round | median |",
        "| --- | --- | --- |",
        f"| Ray 2 actors / local | {', '.join(f'{x:.2f}' for x in vs_local)} "
        f"| **{statistics.median(vs_local):.2f}x** |",
        f"| Ray 2 actors / Ray 1 actor | {', '.join(f'{x:.2f}' for x in scaling)} "
        f"| **{statistics.median(scaling):.2f}x** |",
        "",
        "The machine is shared: what a run gets is the CPU it is given. CPUs used (the "
        "driver process and the actor processes, from /proc) and images per CPU-second, "
        "median over the rounds:",
        "",
        "| run | CPUs used | images per CPU-second |",
        "| --- | --- | --- |",
        *[
            f"| {name} | {statistics.median(cpus[name]):.2f} "
            f"| {statistics.median(per_cpu[name]):.1f} |"
            for name in RUNS
        ],
        "",
        f"Images/s per round (local / 2 actors / 1 actor): {cells}. Load average (1 min) "
        f"after each run: {loads}.",
    ]


def report(args, rec: Measurements) -> list[str]:
    key = f"{args.images}x{args.batch_size}"
    runs = {name: rec.data[f"run {key} {name}"] for name in RUNS}
    local, two, one = (runs[k]["items_per_s"] for k in RUNS)
    costs = rec.data[f"item costs b{args.batch_size}"]
    driver = rec.data[f"driver {key}"]
    fits = {
        w: block_fit([rec.data[f"tiny {args.overhead_items} w{w} b{b}"] for b in TINY_BATCHES])
        for w in (1, 2)
    }
    (block1, fixed1), (block2, fixed2) = fits[1], fits[2]
    per_item = costs["preprocess"] + costs["inference"]
    identical = rec.data[f"identical {key}"]["identical"]
    lines = [
        f"Model: {runs['local']['model']}; {args.images:,} Fashion-MNIST test images (uint8 "
        f"28x28 .npy, resized to 224 RGB), batch {args.batch_size}, CPU provider; one run "
        "each, in this order, on one Ray session (`ray.init(num_cpus=2)`, start-up "
        f"{rec.data['ray startup']['seconds']:.1f} s, not counted). Times are end to end "
        "(listing, planning, actor start-up, compute, commit).",
        "",
        "| engine | images/s | ratio |",
        "| --- | --- | --- |",
        f"| `extract` in one process (ORT on both cores) | {local:.1f} | 1.00x |",
        f"| `--engine ray`, 2 single-threaded actors | {two:.1f} | **{two / local:.2f}x** "
        "local (goal >= 0.8x) |",
        f"| `--engine ray`, 1 single-threaded actor | {one:.1f} | 2 actors / 1 = "
        f"**{two / one:.2f}x** (goal >= 1.7x) |",
        "",
        f"The 2-actor Ray store equals the local one (ids, features): "
        f"{'yes' if identical else 'NO'}.",
        "",
        *rounds_table(args, rec),
        "",
        "### Cost model",
        "",
        "| term | measured | where it is paid |",
        "| --- | --- | --- |",
        f"| preprocessing (decode, resize to 224, normalise), CPU time "
        f"| {costs['preprocess'] * 1e3:.2f} ms/item | in the actor, one CPU |",
        f"| Lite0 inference, one ORT thread, CPU time | {costs['inference'] * 1e3:.2f} ms/item "
        "| in the actor (its CPU or GPU) |",
        f"| Ray per-batch cost, 2 actors (tiny model, {args.overhead_items:,} items at batch "
        f"{', '.join(map(str, TINY_BATCHES))}; fixed part {fixed2:.1f} s/run) "
        f"| {block2 * 1e3:.1f} ms/batch | driver scheduling + actor call (up to 8 batches "
        "per Ray task) |",
        f"| Ray per-batch cost, 1 actor (fixed part {fixed1:.1f} s/run) | {block1 * 1e3:.1f} "
        "ms/batch | |",
        f"| listing + hashing the .npy source | {driver['listing'] * 1e6:.1f} us/item | driver, "
        f"serial, once per run (sha256 alone: {driver['hash_mb_s']:.0f} MB/s) |",
        f"| commit (merge {args.batch_size}-row shards of {driver['row_mb'] * 1e3:.1f} KB rows, "
        f"new index) | {driver['commit'] * 1e6:.1f} us/item | driver, serial, at the end |",
        "",
        f"One CPU actor on a core of its own: {per_item * 1e3:.1f} ms/item + "
        f"{block2 * 1e3:.0f} ms per batch of {args.batch_size} = "
        f"{1 / (per_item + block2 / args.batch_size):.1f} items/s predicted; N actors on N "
        "free cores: N times that, the model being the bottleneck (the images per "
        "CPU-second above are the same for 1 and 2 actors).",
        "",
        "### Scaling to N GPU nodes (model)",
        "",
        "Items/s = 1 / (listing + commit + max(actor / N, per-batch cost / batch)), with the terms "
        "above; a one-GPU actor is taken as bound by its one-CPU preprocessing plus its "
        "share of the per-batch cost (Lite0 inference on a GPU is far faster). The serial terms "
        "stay in the driver: listing and hashing before the run, the commit after it, and "
        "Ray's per-batch scheduling, which caps the run at batch / per-batch-cost items/s.",
        "",
        "| GPU nodes | batch 32 | batch 256 |",
        "| --- | --- | --- |",
    ]
    commit_big = rec.data[f"commit {args.images} b{BIG_BATCH}"]["commit"]
    for nodes in (1, 2, 4, 8, 16, 32, 64):
        a = scaling(costs, block2, driver, driver["commit"], args.batch_size, nodes)
        b = scaling(costs, block2, driver, commit_big, BIG_BATCH, nodes)
        lines.append(f"| {nodes} | {a:,.0f} | {b:,.0f} |")
    ceiling = 1 / (driver["listing"] + driver["commit"])
    ceiling_big = 1 / (driver["listing"] + commit_big)
    lines += [
        "",
        f"Where it stops: Ray's per-batch cost ({block2 * 1e3:.0f} ms/batch, about the same "
        f"with 1 and 2 actors, so paid serially) caps batch {args.batch_size} at "
        f"{args.batch_size / block2:,.0f} items/s and batch {BIG_BATCH} at "
        f"{BIG_BATCH / block2:,.0f}. Listing + commit are serial in the driver: "
        f"{(driver['listing'] + driver['commit']) * 1e6:.0f} us/item at batch "
        f"{args.batch_size} (the commit opens every journal shard: a per-shard cost) and "
        f"{(driver['listing'] + commit_big) * 1e6:.0f} us/item at batch {BIG_BATCH}, so no "
        f"cluster exceeds {ceiling:,.0f} or {ceiling_big:,.0f} items/s end to end. Storage: "
        f"each item's features ({driver['row_mb'] * 1e3:.1f} KB) are written by an actor, "
        "then read and written again by the commit's merge, so the shared filesystem "
        "carries 3x the feature bytes plus the source bytes; at 1 GB/s that is "
        f"{1e3 / (3 * driver['row_mb'] * 1e3):,.0f}k items/s for Lite0's pooled features, "
        "above the driver's limits.",
    ]
    return lines


TINY_BATCHES = (8, 32, 128)
BIG_BATCH = 256  # the scaling table's second column


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--overhead-items", type=int, default=2000, help="tiny-model items")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of 3 runs")
    parser.add_argument("--round-images", type=int, default=2000, help="images per round run")
    parser.add_argument("--fresh", action="store_true", help="measure recorded ones again")
    args = parser.parse_args()
    rec = Measurements(RECORDS.latest(), args.fresh)
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    n, bs, key = args.images, args.batch_size, f"{args.images}x{args.batch_size}"
    try:
        b = Bench(work, n, bs)
        rec.get("ray startup", b.ray_startup)
        for name in RUNS:
            rec.get(f"run {key} {name}", lambda name=name: b.run(name))
        rec.get(f"identical {key}", b.identical)
        names = list(RUNS)
        for r in range(args.rounds):  # interleaved, rotated: drifting load hits all alike
            for name in names[r % 3 :] + names[: r % 3]:
                run = lambda name=name, r=r: b.run(name, args.round_images, f"-r{r}")  # noqa: E731
                rec.get(f"round {args.round_images}x{bs} r{r} {name}", run)
        m = args.overhead_items
        for w in (1, 2):
            for tb in TINY_BATCHES:
                rec.get(f"tiny {m} w{w} b{tb}", lambda w=w, tb=tb: tiny_run(work, m, w, tb))
        import ray

        ray.shutdown()
        rec.get(f"item costs b{bs}", lambda: bench_item_costs(b.model[0], b.data, bs))
        rec.get(f"driver {key}", lambda: bench_driver(work, b.data, n, bs))
        rec.get(f"commit {n} b{BIG_BATCH}", lambda: commit_cost(work, n, BIG_BATCH))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings = ("images", "batch_size", "overhead_items", "rounds", "round_images")
    RECORDS.add({"report": f"{n}x{bs}"}, {"args": {k: getattr(args, k) for k in settings}})
    print(RECORDS.section(render))


def render(records: list[dict]) -> str:
    """The report of each ``report`` record from the measurements (run_all.py calls this)."""
    rec = Measurements(records)
    lines = []
    for r in (r for r in records if "report" in r["key"]):
        m = r["machine"]
        lines += [
            f"Machine: {m['cores']} CPU cores, no GPU, Python {m['python']}; load average "
            f"{m['load'][0]:.1f} at the end (other jobs share the cores: read the ratios). "
            f"Reproduce: `{r['command']}` (one record per measurement in `results/ray.jsonl`; "
            "a measurement already recorded is reused unless `--fresh`).",
            "",
            *report(argparse.Namespace(**r["args"]), rec),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
