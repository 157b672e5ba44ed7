"""Extraction and store-read speed, side by side in one run; records in results/extract.jsonl.

    .venv/bin/python benchmarks/bench_extract.py            # EfficientNet-Lite0, 320 images
    .venv/bin/python benchmarks/bench_extract.py --images 640 --rows 200000

1. ``embedkit.extract.extract`` (scan, decode, preprocess, run, journal, commit) against a
   bare loop of ``session.run`` over the same batches already preprocessed, same model and
   session options. Fashion-MNIST test images (uint8 28x28, as a .npy of image arrays) go
   through the model's own preprocessing (resize to 224, RGB, normalise).
2. Reading a store of ``--rows`` x 768 float32 rows: ``iter_batches`` (shuffled and
   sequential, in-memory and streaming) against ``np.load(mmap_mode="r")`` of the same data.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import Records
from _inputs import get_model, record_spinning, spinning_line, write_jpegs
from joblib import cpu_count

from embedkit.datasets import load_fashion_mnist
from embedkit.extract import extract, load_model, open_source
from embedkit.extract.preprocess import make_preprocessor
from embedkit.rows import from_arrays
from embedkit.store import FeatureStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def tiny_models(work: Path) -> tuple[Path, Path]:
    """Two small exports: a Linear layer over (N, 6) rows and a strided conv over 16x16 RGB."""
    import torch

    from embedkit.backbones import export
    from embedkit.contract import ImageSpec

    rows, image = work / "cache-a.onnx", work / "cache-i.onnx"
    export(torch.nn.Linear(6, 3), torch.randn(2, 6), out=rows)
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    spec = ImageSpec(size=(16, 16), mean=(127.0,) * 3, std=(128.0,) * 3)
    export(conv, torch.randn(2, 3, 16, 16), out=image, preprocess=spec)
    return rows, image


def bare_loop(model: Path, batches: list[dict], spinning: bool) -> float:
    """Seconds for ``session.run`` over ready batches (graph optimisations on, all cores).

    ``True`` is onnxruntime's default; extract spins only when no other process runs.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = cpu_count()  # as extract's Runner: cores this process may use
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    session.run(None, batches[0])  # warm-up, as extract's first batch is not
    t0 = time.perf_counter()
    for feed in batches:
        session.run(None, feed)
    return time.perf_counter() - t0


def write_pngs(root: Path, images: np.ndarray) -> Path:
    """The Fashion-MNIST images as ``root/<even|odd>/NNNNN.png`` (grey, 28x28)."""
    from PIL import Image

    for i, image in enumerate(images):
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads (what a run costs, whatever the load)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_WORK: tuple = ()  # (source, preprocessor) of decode_scaling's workers


def _load_folder(model: Path, root: Path) -> None:
    global _WORK
    source = open_source(root)
    source.scan()
    _WORK = (source, make_preprocessor(load_model(model), source.kind, str(root)))


def _prepare(indices: list[int]) -> int:
    """Decode and preprocess images ``indices`` of the folder (a thread or a worker process)."""
    source, pre = _WORK
    return len([pre.prepare(source.read(i)) for i in indices])


def decode_scaling(model: Path, root: Path, n: int) -> list[str]:
    """JPEG decode + resize throughput: 1 thread, then all cores as threads and as processes.

    Threads scale like processes when PIL releases the GIL (it does, in decode and resize);
    then worker processes would only add start-up and pickling.
    """
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    cores = cpu_count()
    chunks = [list(range(k, n, 4 * cores)) for k in range(4 * cores)]
    _load_folder(model, root)  # the threads share it; each process loads its own
    pools = (
        ("1 thread", lambda: ThreadPoolExecutor(1)),
        (f"{cores} threads", lambda: ThreadPoolExecutor(cores)),
        (
            f"{cores} worker processes (start-up excluded)",
            lambda: ProcessPoolExecutor(cores, initializer=_load_folder, initargs=(model, root)),
        ),
    )
    rates = {}
    for name, make in pools:
        with make() as pool:
            list(pool.map(_prepare, [[0]] * 2 * cores))  # start the workers, warm the cache
            t0 = time.perf_counter()
            done = sum(pool.map(_prepare, chunks))
            rates[name] = done / (time.perf_counter() - t0)
    one = rates["1 thread"]
    return [
        f"| JPEG decode + preprocess, {name} | {rate:.0f} | {rate / one:.2f}x of 1 thread |"
        for name, rate in rates.items()
    ]


def _timed(run, *args, **kwargs) -> tuple:
    """(result, wall seconds, CPU seconds of the whole process) of ``run(*args, **kwargs)``."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    result = run(*args, **kwargs)
    return result, time.perf_counter() - t0, cpu_seconds() - c0


def bench_extract(work: Path, n_images: int, batch: int, rounds: int) -> list[str]:
    record_spinning()
    model, model_name = get_model(work)
    images, _ = load_fashion_mnist(REPO / "data/fashion-mnist", "test")
    data = work / "fmnist.npy"
    np.save(data, images[:n_images])
    spec = load_model(model)
    source = open_source(data)
    pre = make_preprocessor(spec, source.kind, str(data))
    t0 = time.perf_counter()
    batches = [
        pre.collate([pre.prepare(source.read(i)) for i in range(lo, min(lo + batch, n_images))])
        for lo in range(0, n_images, batch)
    ]
    prep_s = time.perf_counter() - t0
    sources = {
        "arrays": data,
        "jpeg": write_jpegs(work / "jpegs", n_images),
        "png": write_pngs(work / "pngs", images[:n_images]),
    }
    rates: dict[str, list[float]] = {k: [] for k in ("spin", "bare", *sources)}
    cpu: dict[str, list[float]] = {k: [] for k in ("bare", *sources)}  # CPU ms per image
    for r in range(rounds):  # interleaved, so drifting load hits all alike
        rates["spin"].append(n_images / bare_loop(model, batches, spinning=True))
        loops: list[float] = []
        for name, path in sources.items():
            loop_s, _, cpu_s = _timed(bare_loop, model, batches, spinning=False)
            loops.append(loop_s)
            cpu["bare"].append(1e3 * cpu_s / n_images)  # session start and warm-up included
            out = work / f"{name}{r}.h5"
            _, seconds, cpu_s = _timed(extract, model, path, out, batch_size=batch, progress=False)
            rates[name].append(n_images / seconds)
            cpu[name].append(1e3 * cpu_s / n_images)
        loops.append(bare_loop(model, batches, spinning=False))  # bracket the extract runs
        rates["bare"].append(n_images / statistics.mean(loops))
        print(
            f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()) + " img/s",
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = max(med["spin"], med["bare"])
    bests = [max(x, y) for x, y in zip(rates["spin"], rates["bare"])]

    def row(name: str, label: str) -> str:
        same = [z / b for z, b in zip(rates[name], bests)]  # same-round ratios
        c = statistics.median(cpu[name]) / statistics.median(cpu["bare"])
        return (
            f"| {label} | {med[name]:.1f} | {med[name] / best:.2f}x (same-round median "
            f"**{statistics.median(same):.2f}x**, range {min(same):.2f}-{max(same):.2f}x) "
            f"| {statistics.median(cpu[name]):.1f} ({c:.2f}x) |"
        )

    return [
        f"Model: {model_name}; {n_images} Fashion-MNIST test images (uint8 28x28 .npy, "
        f"resized to 224 RGB by the model's preprocessing), batch {batch}, CPU provider, "
        f"{cpu_count()} intra-op threads in every session, {rounds} interleaved rounds "
        "(median); ratios against the faster bare loop. CPU ms per image: the whole "
        "process, all threads (bare: session start and warm-up included): unlike the rates, "
        "it hardly moves with the load of other jobs.",
        "",
        "| pipeline | images/s | vs bare loop | CPU ms per image |",
        "| --- | --- | --- | --- |",
        f"| bare `session.run` over preprocessed batches, ORT default (threads spin) "
        f"| {med['spin']:.1f} | {med['spin'] / best:.2f}x | |",
        f"| bare `session.run`, spinning off (mean of runs "
        f"between the extract runs of each round) | {med['bare']:.1f} | {med['bare'] / best:.2f}x "
        f"| {statistics.median(cpu['bare']):.1f} (1.00x) |",
        row(
            "arrays",
            "`embedkit.extract.extract` from the .npy (read, preprocess, run, journal, commit)",
        ),  # fmt: skip
        row(
            "jpeg", f"`extract` from a folder of {n_images} JPEGs (500x375 photos, decode + resize)"
        ),
        row("png", f"`extract` from a folder of the same {n_images} images as PNGs (28x28 grey)"),
        f"| preprocessing alone (one thread) | {n_images / prep_s:.0f} "
        f"| {n_images / prep_s / best:.1f}x | |",
        *decode_scaling(model, sources["jpeg"], n_images),
        "",
        "Per round (img/s): "
        + "; ".join(f"{k} " + " / ".join(f"{x:.1f}" for x in v) for k, v in rates.items())
        + ". "
        + spinning_line(),
    ]


def _epoch(batches) -> float:
    t0 = time.perf_counter()
    for x, _ in batches:
        x.sum()  # touch the rows, as a training step would
    return time.perf_counter() - t0


def bench_reads(work: Path, rows: int, dim: int = 768, batch: int = 256) -> list[str]:
    X = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    y = np.arange(rows) % 10
    mb = X.nbytes / 1e6
    npy, h5 = work / "x.npy", work / "x.h5"
    np.save(npy, X)
    from_arrays(h5, X, y).close()
    del X
    perm = np.random.default_rng(0).permutation(rows)
    mm = np.load(npy, mmap_mode="r")
    results = {
        "npy memmap, random 256-row batches": _epoch(
            (mm[perm[lo : lo + batch]], None) for lo in range(0, rows, batch)
        ),
        "npy memmap, sequential 256-row slices": _epoch(
            (mm[lo : lo + batch], None) for lo in range(0, rows, batch)
        ),
    }
    with FeatureStore(h5) as fs:
        results["store `iter_batches(shuffle=True)` (memory-mapped)"] = _epoch(
            fs.iter_batches(batch, shuffle=True, seed=0)
        )
        results["store `iter_batches()` sequential (memory-mapped)"] = _epoch(
            fs.iter_batches(batch)
        )
        results["store `iter_batches(shuffle=True)`, streaming (64 MB limit)"] = _epoch(
            fs.iter_batches(batch, shuffle=True, seed=0, memory_limit=64 << 20)
        )
        results["store `iter_batches()` sequential, streaming (64 MB limit)"] = _epoch(
            fs.iter_batches(batch, memory_limit=64 << 20)
        )
    ref = results["npy memmap, random 256-row batches"]
    lines = [
        f"{rows:,} x {dim} float32 rows ({mb:.0f} MB), one epoch of {batch}-row batches, "
        "each batch summed; the page cache is warm (files just written).",
        "",
        "| read | s per epoch | MB/s | vs npy memmap random |",
        "| --- | --- | --- | --- |",
    ]
    for name, seconds in results.items():
        lines.append(f"| {name} | {seconds:.2f} | {mb / seconds:,.0f} | {ref / seconds:.2f}x |")
    return lines


def bench_cache(work: Path, n: int = 10_000) -> list[str]:
    """Re-running extract on unchanged inputs: nothing is computed, only ids are checked."""
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = work / "cache.npy"
    np.save(arrays, rng.normal(size=(n, 6)).astype(np.float32))
    folder = work / "cache-pngs"
    for i in range(n):
        d = folder / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    lines = [
        f"{n:,} items; the second `extract` call on the same source and store, in one "
        "process (Python start-up excluded).",
        "",
        "| source | first run: computed, s | re-run: computed | re-run s |",
        "| --- | --- | --- | --- |",
    ]
    rows_model, image_model = tiny_models(work)
    cases = (("`.npy` array (N, 6)", rows_model, arrays), ("folder of PNGs", image_model, folder))
    for name, model, source in cases:
        out = work / f"cache-{source.stem}.h5"
        first = extract(model, source, out, progress=False)
        t0 = time.perf_counter()
        again = extract(model, source, out, progress=False)
        seconds = time.perf_counter() - t0
        lines.append(
            f"| {name} | {first.n_computed:,}, {first.seconds:.1f} | {again.n_computed} | "
            f"{seconds:.3f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--extract-only", action="store_true", help="print the throughput table, record nothing"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        extract_lines = bench_extract(work, args.images, args.batch_size, args.rounds)
        if args.extract_only:
            print(f"load average {os.getloadavg()[0]:.1f}", *extract_lines, sep="\n")
            return
        read_lines = bench_reads(work, args.rows)
        cache_lines = bench_cache(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            f"Machine: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}; "
            f"load average {load:.1f} at the end (other jobs share the cores: read the ratios). "
            f"Reproduce: `.venv/bin/python benchmarks/bench_extract.py --images {args.images} "
            f"--rows {args.rows}`.",
            "",
            "### Extraction throughput",
            "",
            *extract_lines,
            "",
            "### Store reads",
            "",
            *read_lines,
            "",
            "### Cache: re-running on unchanged inputs",
            "",
            *cache_lines,
            "",
        ]
    )
    key = {"images": args.images, "batch_size": args.batch_size, "rounds": args.rounds,
           "rows": args.rows}  # fmt: skip
    old = "results/extract.md" if vars(args) == vars(parser.parse_args([])) else None
    Records("extract").add_markdown(key, text, supersedes=old)
    print(text)


if __name__ == "__main__":
    main()
