"""Extraction and store-read speed, side by side in one run; writes results/extract.md.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embedkit.datasets import load_fashion_mnist
from embedkit.extract import extract, load_model, open_source
from embedkit.extract.preprocess import make_preprocessor
from embedkit.store import FeatureStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def get_model(work: Path) -> tuple[Path, str]:
    """The EfficientNet-Lite0 export, through the CLI."""
    out = work / "lite0.onnx"
    export = [sys.executable, "-m", "embedkit", "export", "efficientnet_lite0", "--out", str(out)]
    subprocess.run(export, cwd=REPO, check=True, capture_output=True)
    return out, "EfficientNet-Lite0 (embedkit export, fp32)"


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

    ``spinning=False`` is extract's own setting; ``True`` is onnxruntime's default.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    session.run(None, batches[0])  # warm-up, as extract's first batch is not
    t0 = time.perf_counter()
    for feed in batches:
        session.run(None, feed)
    return time.perf_counter() - t0


def write_jpegs(root: Path, n: int) -> Path:
    """``n`` JPEG photos of 500x375, random crops of scikit-image's samples, 2 classes."""
    from PIL import Image
    from skimage import data as samples

    rng = np.random.default_rng(0)
    photos = [samples.astronaut(), samples.coffee(), samples.chelsea(), samples.rocket()]
    for i in range(n):
        photo = photos[i % len(photos)]
        big = Image.fromarray(photo).resize((700, 525))
        left, top = int(rng.integers(0, 200)), int(rng.integers(0, 150))
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        big.crop((left, top, left + 500, top + 375)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def write_pngs(root: Path, images: np.ndarray) -> Path:
    """The Fashion-MNIST images as ``root/<even|odd>/NNNNN.png`` (grey, 28x28)."""
    from PIL import Image

    for i, image in enumerate(images):
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return root


def bench_extract(work: Path, n_images: int, batch: int, rounds: int) -> list[str]:
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
    jpegs = write_jpegs(work / "jpegs", n_images)
    pngs = write_pngs(work / "pngs", images[:n_images])
    spin, bare, ours, jpg, png = [], [], [], [], []
    for r in range(rounds):  # interleaved, so drifting load hits all alike
        before = bare_loop(model, batches, spinning=False)
        spin.append(n_images / bare_loop(model, batches, spinning=True))
        summary = extract(model, data, work / f"a{r}.h5", batch_size=batch, progress=False)
        assert summary.n_computed == n_images
        ours.append(n_images / summary.seconds)
        summary = extract(model, jpegs, work / f"j{r}.h5", batch_size=batch, progress=False)
        jpg.append(n_images / summary.seconds)
        summary = extract(model, pngs, work / f"p{r}.h5", batch_size=batch, progress=False)
        png.append(n_images / summary.seconds)
        after = bare_loop(model, batches, spinning=False)  # bracket the extract runs
        bare.append(n_images / ((before + after) / 2))
        print(f"round {r}: bare {spin[-1]:.1f} / {bare[-1]:.1f}, extract {ours[-1]:.1f}, "
              f"jpeg {jpg[-1]:.1f} img/s", flush=True)  # fmt: skip
    s, b, o = statistics.median(spin), statistics.median(bare), statistics.median(ours)
    best = max(s, b)
    per_round = [z / max(x, y) for x, y, z in zip(spin, bare, ours)]  # same-round ratios
    jpg_round = [z / max(x, y) for x, y, z in zip(spin, bare, jpg)]
    j = statistics.median(jpg)
    png_round = [z / max(x, y) for x, y, z in zip(spin, bare, png)]
    p = statistics.median(png)
    return [
        f"Model: {model_name}; {n_images} Fashion-MNIST test images (uint8 28x28 .npy, "
        f"resized to 224 RGB by the model's preprocessing), batch {batch}, CPU provider, "
        f"{rounds} interleaved rounds (median); ratios against the faster bare loop.",
        "",
        "| pipeline | images/s | ratio |",
        "| --- | --- | --- |",
        f"| bare `session.run` over preprocessed batches, ORT default (threads spin) "
        f"| {s:.1f} | {s / best:.2f}x |",
        f"| bare `session.run`, extract's session options (no spinning; mean of a run before "
        f"and one after the extract runs of each round) | {b:.1f} "
        f"| {b / best:.2f}x |",
        f"| `embedkit.extract.extract` end to end (read, preprocess, run, journal, commit) "
        f"| {o:.1f} | {o / best:.2f}x (same-round ratios: median "
        f"**{statistics.median(per_round):.2f}x**, range {min(per_round):.2f}-"
        f"{max(per_round):.2f}x) |",
        f"| `extract` from a folder of {n_images} JPEGs (500x375 photos, decode + resize) "
        f"| {j:.1f} | {j / best:.2f}x (same-round median **{statistics.median(jpg_round):.2f}x**, "
        f"range {min(jpg_round):.2f}-{max(jpg_round):.2f}x) |",
        f"| `extract` from a folder of the same {n_images} images as PNGs (28x28 grey) "
        f"| {p:.1f} | {p / best:.2f}x (same-round median **{statistics.median(png_round):.2f}x**, "
        f"range {min(png_round):.2f}-{max(png_round):.2f}x) |",
        f"| preprocessing alone (one thread) | {n_images / prep_s:.0f} "
        f"| {n_images / prep_s / best:.1f}x |",
        "",
        "Per round (bare spinning / bare no spinning / extract, img/s): "
        + ", ".join(f"{x:.1f} / {y:.1f} / {z:.1f}" for x, y, z in zip(spin, bare, ours))
        + ". By hand, ORT + preprocessing + h5py = 0.93x bare on ResNet-18.",
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
    FeatureStore.from_arrays(h5, X, y).close()
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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        extract_lines = bench_extract(work, args.images, args.batch_size, args.rounds)
        read_lines = bench_reads(work, args.rows)
        cache_lines = bench_cache(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "## Extract",
            "",
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
    out = HERE / "results" / "extract.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
