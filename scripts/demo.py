"""The embedkit demo: real transfer learning on real offline data, end to end.

    make demo            # or: .venv/bin/python scripts/demo.py [--train 3000 --test 1000]

1. writes a Fashion-MNIST subset as PNG image folders (one subfolder per class);
2. exports the pretrained EfficientNet-Lite0 to ONNX, verified against torch;
3. extracts its 1280-d features into an HDF5 store with ONNX Runtime (train and test);
4. re-runs the extraction to show the cache (nothing is recomputed);
5. trains heads on the cached features and on raw pixels, and prints a table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from embedkit.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from embedkit.heads import make_head
from embedkit.rows import split_rows
from embedkit.store import FeatureStore

OUT = Path("demo-out")


def sh(*args: str) -> None:
    """Run an embedkit CLI command, showing it as a user would type it."""
    print(f"\n$ embedkit {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "embedkit", *args], check=True)


def write_pngs(images: np.ndarray, labels: np.ndarray, root: Path) -> None:
    from PIL import Image

    if root.exists():
        return
    for i, (img, lab) in enumerate(zip(images, labels)):
        d = root / FASHION_MNIST_CLASSES[lab]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")


def subset(images, labels, n, seed=0):
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(labels), size=n, replace=False))
    return images[idx], labels[idx]


def fit_and_score(name, X_tr, y_tr, X_te, y_te):
    head = make_head(name, random_state=0)
    t0 = time.perf_counter()
    head.fit(X_tr, y_tr)
    return head.score(X_te, y_te), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=3000, help="training images (default 3000)")
    p.add_argument("--test", type=int, default=1000, help="test images (default 1000)")
    args = p.parse_args()
    t_start = time.perf_counter()

    print("== 1. Fashion-MNIST subset as PNG folders")
    tr_x, tr_y = subset(*load_fashion_mnist(split="train"), args.train)
    te_x, te_y = subset(*load_fashion_mnist(split="test"), args.test)
    data = OUT / f"fmnist-{args.train}-{args.test}"
    write_pngs(tr_x, tr_y, data / "train")
    write_pngs(te_x, te_y, data / "test")
    print(f"{args.train} train + {args.test} test images under {data}/")

    print("\n== 2. Export the pretrained backbone (once)")
    model = OUT / "efficientnet_lite0.onnx"
    if not model.exists():
        sh("export", "efficientnet_lite0", "--out", str(model))
    else:
        print(f"{model} exists; delete it to re-export")

    print("\n== 3. Extract features into the store (once)")
    # Fashion-MNIST items fill their frame: --preprocess full-frame resizes it whole instead
    # of the photo recipe's centre crop (the preprocessing is part of the store's fingerprint).
    store = OUT / f"fmnist-lite0-{args.train}-{args.test}.h5"
    for split in ("train", "test"):
        sh("extract", str(model), str(data / split), "--out", str(store), "--split", split,
           "--preprocess", "full-frame")  # fmt: skip

    print("\n== 4. Re-run: the store is a cache, nothing is recomputed")
    t0 = time.perf_counter()
    sh("extract", str(model), str(data / "train"), "--out", str(store), "--split", "train",
       "--preprocess", "full-frame")  # fmt: skip
    rerun = time.perf_counter() - t0
    sh("info", str(store))

    print("\n== 5. Heads on cached features vs raw pixels")
    with FeatureStore(store) as fs:
        parts = split_rows(fs, val=0, test=0)
        X, y = fs.features(), fs.labels()
    X_tr, y_tr, X_te, y_te = (
        X[parts["train"]],
        y[parts["train"]],
        X[parts["test"]],
        y[parts["test"]],
    )
    # Raw pixels of the same images, in the same label coding (store label names are sorted).
    names = sorted(FASHION_MNIST_CLASSES)
    recode = np.array([names.index(c) for c in FASHION_MNIST_CLASSES])
    P_tr = tr_x.reshape(len(tr_x), -1).astype(np.float32) / 255.0
    P_te = te_x.reshape(len(te_x), -1).astype(np.float32) / 255.0
    rows = []
    for head in ("logreg", "linear", "mlp"):
        acc_f, sec_f = fit_and_score(head, X_tr, y_tr, X_te, y_te)
        acc_p, sec_p = fit_and_score(head, P_tr, recode[tr_y], P_te, recode[te_y])
        rows.append((head, acc_f, sec_f, acc_p, sec_p))

    print(f"\nFashion-MNIST, {len(y_tr)} train / {len(y_te)} test images, 10 classes")
    print(
        f"{'head':<8} | {'Lite0 features':>15} | {'fit s':>6} | {'raw pixels':>10} | {'fit s':>6}"
    )
    print(f"{'-' * 8}-+-{'-' * 15}-+-{'-' * 6}-+-{'-' * 10}-+-{'-' * 6}")
    for head, acc_f, sec_f, acc_p, sec_p in rows:
        print(f"{head:<8} | {acc_f:>15.3f} | {sec_f:>6.1f} | {acc_p:>10.3f} | {sec_p:>6.1f}")
    print(f"\ncached re-run of extract: {rerun:.1f} s (incl. Python start-up)")
    print(f"demo total: {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
