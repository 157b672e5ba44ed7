"""Audit speed at scale and label-error detection quality; records in results/audit.jsonl.

    .venv/bin/python benchmarks/bench_audit.py                      # everything
    .venv/bin/python benchmarks/bench_audit.py --n 20000 --fmnist 1000   # quicker

1. Scale (synthetic Gaussian blobs, ``--n`` x ``--dim`` float32, 10 classes, 1% planted
   near-copies): the blocked duplicate/k-NN pass, and the same pass with one N x N
   matrix at ``--brute-n`` rows side by side (seconds, peak traced memory); the
   out-of-fold pass with the capped ``sgd`` and ``logreg`` heads.
2. Validation: 5% of the labels of a Fashion-MNIST training subset (``--fmnist`` images)
   flipped to another class; precision and recall at top-k (k = number flipped) of the
   self-confidence and margin rankings, and of the confident-joint issue set, on raw
   pixels and on EfficientNet-Lite0 features (``embedkit export`` + ``embedkit extract``).
   With cleanlab installed, ``cleanlab.filter.find_label_issues`` on the same
   out-of-fold probabilities is compared too.

Each measurement is one record in ``results/audit.jsonl`` (``_harness.py``); a record
already there is reused (``--force`` re-measures). RESULTS.md renders them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _harness import Records

from embedkit.audit import brute_force_scan, find_label_issues, neighbor_scan, out_of_fold_proba
from embedkit.datasets import load_fashion_mnist

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = REPO / "runs" / "bench_audit"  # the Lite0 features, reused between runs
RECORDS = Records("audit")


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs (10 classes) with 1% of rows replaced by near-copies of others."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim)).astype(np.float32)
    y = rng.integers(0, 10, n)
    X = centers[y] + rng.normal(scale=1.5, size=(n, dim)).astype(np.float32)  # (N, D)
    copies = rng.choice(n, n // 100, replace=False)
    X[copies] = X[(copies + 1) % n] + 0.01 * rng.normal(size=(len(copies), dim))
    y[copies] = y[(copies + 1) % n]
    return X, y


def measure(fn, *args, **kwargs) -> tuple[object, float, float]:
    """Run ``fn``; return (result, seconds, peak traced MiB of new allocations)."""
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result, seconds, peak


def record(name: str, force: bool, fn) -> None:
    """Measure ``name`` with ``fn()`` and record it, unless it is recorded."""
    if RECORDS.done({"name": name}) and not force:
        print(f"reuse {name}", flush=True)
        return
    print(f"measure {name} ...", flush=True)
    rec = {"name": name, **fn(), "load_after": round(os.getloadavg()[0], 1)}
    RECORDS.add({"name": name}, rec)


def bench_neighbors(n: int, dim: int, block: int, brute: bool) -> dict:
    X, _ = synthetic(n, dim)
    if brute:
        scan, seconds, peak = measure(brute_force_scan, X, threshold=0.98, k=10)
    else:
        scan, seconds, peak = measure(neighbor_scan, X, threshold=0.98, k=10, block_size=block)
    return {
        "n": n,
        "dim": dim,
        "block": None if brute else block,
        "seconds": round(seconds, 2),
        "peak_mib": round(peak, 1),
        "input_mib": round(X.nbytes / 2**20, 1),
        "pairs": int(scan.n_pairs_total),
    }


def bench_oof(n: int, dim: int, head: str, folds: int) -> dict:
    X, y = synthetic(n, dim)
    proba, seconds, peak = measure(out_of_fold_proba, X, y, head=head, folds=folds)
    return {
        "n": n,
        "dim": dim,
        "head": head,
        "folds": folds,
        "seconds": round(seconds, 1),
        "peak_mib": round(peak, 1),
        "oof_accuracy": round(float((proba.argmax(1) == y).mean()), 4),
    }


def fmnist_subset(n: int, seed: int = 0):
    images, labels = load_fashion_mnist(REPO / "data/fashion-mnist", "train")
    rows = np.random.default_rng(seed).choice(len(labels), n, replace=False)
    return images[rows], labels[rows]


def flip(y: np.ndarray, fraction: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(y), int(round(fraction * len(y))), replace=False))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    return noisy, flipped


def lite0_features(images: np.ndarray, work: Path, tag: str = "fmnist") -> np.ndarray:
    """EfficientNet-Lite0 pooled features through `embedkit export` + `embedkit.extract`."""
    from embedkit.extract import extract
    from embedkit.store import FeatureStore

    work.mkdir(parents=True, exist_ok=True)
    model = work / "lite0.onnx"
    if not model.exists():
        subprocess.run(
            [sys.executable, "-m", "embedkit", "export", "efficientnet_lite0", "--out", str(model)],
            cwd=REPO,
            check=True,
        )
    store = work / f"{tag}{len(images)}_lite0.h5"
    if not store.exists():
        np.save(work / f"{tag}.npy", images)
        extract(model, work / f"{tag}.npy", store, batch_size=32)
    with FeatureStore(store) as fs:
        return fs.features()  # (N, 1280), rows in array order


def bench_validation(features: str, n: int, head: str) -> dict:
    images, truth = fmnist_subset(n)
    if features == "pixels":
        X = images.reshape(n, -1).astype(np.float32) / 255.0  # (N, 784)
    else:
        X = lite0_features(images, RUNS / "lite0")
    noisy, flipped = flip(truth)
    t0 = time.perf_counter()
    proba = out_of_fold_proba(X, noisy, head=head, folds=5)
    found = find_label_issues(noisy, proba)
    seconds = time.perf_counter() - t0
    k = len(flipped)
    rec = {"features": features, "n": n, "dim": int(X.shape[1]), "head": head, "flipped": k}
    rec["seconds"] = round(seconds, 1)
    rec["oof_accuracy_vs_truth"] = round(float((proba.argmax(1) == truth).mean()), 4)
    for by in ("self_confidence", "margin"):
        hits = int(np.isin(found.ranking(by)[:k], flipped).sum())
        rec[f"{by}_precision_at_k"] = round(hits / k, 3)  # at k = flipped, P == R
    issues = np.flatnonzero(found.is_issue)
    rec["cj_issues"] = len(issues)
    rec["cj_precision"] = round(float(np.isin(issues, flipped).mean()), 3) if len(issues) else 0
    rec["cj_recall"] = round(float(np.isin(flipped, issues).mean()), 3)
    rec["estimated_noise_rate"] = round(found.noise_rate, 4)
    try:
        from cleanlab.filter import find_label_issues as cleanlab_find
    except ImportError:
        rec["cleanlab"] = "not installed"
    else:
        theirs = np.flatnonzero(cleanlab_find(noisy, proba, filter_by="confident_learning"))
        rec["cleanlab"] = {
            "issues": len(theirs),
            "precision": round(float(np.isin(theirs, flipped).mean()), 3),
            "recall": round(float(np.isin(flipped, theirs).mean()), 3),
            "jaccard_with_ours": round(
                len(np.intersect1d(issues, theirs)) / max(len(np.union1d(issues, theirs)), 1), 3
            ),
        }
    return rec


def bench_cleaning(n: int, n_test: int = 1000) -> dict:
    """Test accuracy of a logreg head trained on flipped labels, with and without exclusions."""
    from embedkit.audit import audit_arrays
    from embedkit.heads import make_head

    images, truth = fmnist_subset(n)
    test_images, test_y = load_fashion_mnist(REPO / "data/fashion-mnist", "test")
    X = lite0_features(images, RUNS / "lite0")
    Xt = lite0_features(test_images[:n_test], RUNS / "lite0", tag="fmnist-test")
    noisy, flipped = flip(truth)
    report = audit_arrays(X, noisy, folds=5)
    everything = np.ones(n, dtype=bool)
    arms = {
        "flipped labels, nothing excluded": (noisy, everything),
        "exclude the confident-joint issues (suspects.csv)": (
            noisy,
            ~np.isin(np.arange(n), report.suspect_rows()),
        ),
        "exclude the top-k suspects (k = number flipped)": (
            noisy,
            ~np.isin(np.arange(n), report.suspect_rows(len(flipped))),
        ),
        "exclude exactly the flipped items (oracle)": (noisy, ~np.isin(np.arange(n), flipped)),
        "true labels (no noise)": (truth, everything),
    }
    rec = {"n": n, "n_test": n_test, "flipped": len(flipped), "arms": []}
    for name, (labels, keep) in arms.items():
        head = make_head("logreg", random_state=0).fit(X[keep], labels[keep])
        accuracy = float((head.predict(Xt) == test_y[:n_test]).mean())
        rec["arms"].append({"arm": name, "train_rows": int(keep.sum()), "accuracy": accuracy})
    return rec


def render(records: list[dict]) -> str:
    """The tables of the records (run_all.py --render calls this)."""
    loads = sorted({r["load_after"] for r in records})
    commands = sorted({f"`{r['command']}`" for r in records})
    machine = records[0]["machine"]
    lines = [
        f"Machine: {machine['cores']} CPU cores, no GPU, Python {machine['python']}; "
        f"load average after each run {loads[0]}-{loads[-1]} (other jobs share the cores: "
        f"read the ratios). Measured by {', '.join(commands)} (one record per measurement, "
        "reused unless `--force`).",
        "",
    ]
    nb = [r for r in records if r["name"].startswith("neighbors")]
    if nb:
        lines += [
            "### Duplicate + k-NN outlier pass (cosine, threshold 0.98, k = 10)",
            "",
            "Synthetic blobs, float32, 1% planted near-copies. Peak = largest traced "
            "allocation beyond the input (Python tracemalloc, numpy buffers included).",
            "",
            "| rows x dim | method | seconds | peak MiB | input MiB | pairs | time ratio |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        by_n: dict[int, float] = {}
        for r in sorted(nb, key=lambda r: (r["n"], r["block"] is not None)):
            base = by_n.setdefault(r["n"], r["seconds"])
            method = "one N x N matrix" if r["block"] is None else f"blocked, {r['block']} rows"
            lines.append(
                f"| {r['n']:,} x {r['dim']} | {method} | {r['seconds']} | {r['peak_mib']} "
                f"| {r['input_mib']} | {r['pairs']} | {r['seconds'] / base:.2f}x |"
            )
        lines.append("")
    oof = [r for r in records if r["name"].startswith("oof")]
    if oof:
        lines += [
            "### Out-of-fold pass (the audit's first step)",
            "",
            "| rows x dim | head (capped) | folds | seconds | peak MiB | OOF accuracy |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in oof:
            lines.append(
                f"| {r['n']:,} x {r['dim']} | {r['head']} | {r['folds']} | {r['seconds']} "
                f"| {r['peak_mib']} | {r['oof_accuracy']} |"
            )
        lines.append("")
    val = [r for r in records if r["name"].startswith("validate")]
    if val:
        lines += [
            "### Finding flipped labels (Fashion-MNIST, 5% flipped)",
            "",
            "Precision at k = number flipped (recall is the same at that k); the confident-joint "
            "issue set has its own size. 5-fold out-of-fold probabilities.",
            "",
            "| features | items | head | flipped | P@k self-conf. | P@k margin "
            "| CJ issues | CJ precision | CJ recall | est. noise | OOF acc. | seconds |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in val:
            lines.append(
                f"| {r['features']} ({r['dim']}-d) | {r['n']} | {r['head']} | {r['flipped']} "
                f"| {r['self_confidence_precision_at_k']} | {r['margin_precision_at_k']} "
                f"| {r['cj_issues']} | {r['cj_precision']} | {r['cj_recall']} "
                f"| {r['estimated_noise_rate']:.1%} | {r['oof_accuracy_vs_truth']} "
                f"| {r['seconds']} |"
            )
        cl = {json.dumps(r["cleanlab"]) for r in val}
        lines += ["", f"cleanlab comparison: {', '.join(sorted(cl))}.", ""]
    for r in (r for r in records if r["name"].startswith("clean")):
        lines += [
            "### What cleaning buys (audit → exclude → train)",
            "",
            f"Lite0 features, {r['n']} Fashion-MNIST training items with {r['flipped']} labels "
            f"flipped; `logreg` head (embedkit.heads defaults) scored on {r['n_test']} clean "
            "test items.",
            "",
            "| training set | rows | test accuracy | vs nothing excluded |",
            "| --- | ---: | ---: | ---: |",
        ]
        base = r["arms"][0]["accuracy"]
        for arm in r["arms"]:
            lines.append(
                f"| {arm['arm']} | {arm['train_rows']} | {arm['accuracy']:.3f} "
                f"| {arm['accuracy'] - base:+.3f} |"
            )
        se = (base * (1 - base) / r["n_test"]) ** 0.5
        lines += [
            "",
            f"One seed and {r['n_test']:,} test items: differences under about {2 * se:.2f} "
            f"are within noise (binomial standard error {se:.3f}).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="rows for the scale runs")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--brute-n", type=int, default=20_000, help="rows for the N x N run")
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--fmnist", type=int, default=3000, help="Fashion-MNIST images")
    parser.add_argument("--parts", default="neighbors,oof,validate,clean")
    parser.add_argument("--force", action="store_true", help="re-measure existing records")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    jobs = []
    if "neighbors" in parts:
        b = args.brute_n
        jobs += [
            (f"neighbors-{b}x{args.dim}-brute", lambda: bench_neighbors(b, args.dim, 0, True)),
            (
                f"neighbors-{b}x{args.dim}-b{args.block}",
                lambda: bench_neighbors(b, args.dim, args.block, False),
            ),
            (
                f"neighbors-{args.n}x{args.dim}-b{args.block}",
                lambda: bench_neighbors(args.n, args.dim, args.block, False),
            ),
        ]
    if "oof" in parts:
        for head in ("sgd", "logreg"):
            jobs.append(
                (
                    f"oof-{args.n}x{args.dim}-{head}",
                    lambda head=head: bench_oof(args.n, args.dim, head, 5),
                )
            )
    if "validate" in parts:
        for feats in ("pixels", "lite0"):
            for head in ("logreg", "sgd"):
                jobs.append(
                    (
                        f"validate-{feats}-{args.fmnist}-{head}",
                        lambda f=feats, h=head: bench_validation(f, args.fmnist, h),
                    )
                )
    if "clean" in parts:
        jobs.append((f"clean-lite0-{args.fmnist}", lambda: bench_cleaning(args.fmnist)))
    for name, fn in jobs:
        record(name, args.force, fn)
    print(RECORDS.section(render))


if __name__ == "__main__":
    main()
