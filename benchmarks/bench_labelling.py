"""Sparse labels: the labelling loop's accuracy on three stores, its speed, and a peer.

    .venv/bin/python benchmarks/bench_labelling.py --part quality    # 3 stores x 5 seeds
    flock /tmp/embedkit-bench.lock .venv/bin/python benchmarks/bench_labelling.py --part speed
    .venv/bin/python benchmarks/bench_labelling.py --part peers      # needs .venv-peers
    .venv/bin/python benchmarks/bench_labelling.py --part report     # results/labelling.jsonl

1. **quality**: ``embedkit bench STORE --labelling`` (1, 2, 5, 10, 20 labels per class x
   5 seeds) of the default loop (typical picks + the spread head) and of the baseline
   (random picks + logreg) on the reference stores ``stores/fmnist-lite0.h5`` and
   ``stores/fortunes-minilm.h5``, and on scikit-learn's digits (8x8, 1,797 images)
   through Lite0 (built here, 70/30 split). The default loop is what ``select`` +
   ``train --head spread`` do without options: ``auto`` picks ``typical`` up to 20
   labels per class, and ``spread`` (``graph="auto"``, ``balance="auto"``)
   cross-validates on the labelled rows whether to spread over centred or whitened
   features, or not at all, and whether to rebalance the spread labels among classes.
2. **speed** (synthetic float32 Gaussian blobs; run under the bench lock): ``select`` of
   100 rows from 100,000 x 1,280 and from 1,000,000 x 384; a ``spread`` fit on 100,000
   rows; ``bench --labelling`` of 4 strategies x 5 budgets x 5 seeds on 10,000 rows.
3. **peers**: scikit-activeml's strategies (from ``.venv-peers``, never a dependency) on
   the same features, budgets, head (logreg) and seeds.

Run records go to ``runs/labelling/`` (git-ignored); ``report`` records the tables built
from them in ``results/labelling.jsonl``.
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
RUNS = ROOT / "runs" / "labelling"
RESULTS = ROOT / "benchmarks" / "results"
STORES = {
    "fmnist": ROOT / "stores" / "fmnist-lite0.h5",
    "fortunes": ROOT / "stores" / "fortunes-minilm.h5",
    "digits": RUNS / "digits-lite0.h5",
}
DEFAULT = ("typical", "spread")  # the default loop: auto's pick up to 20/class, spread head
BASELINE = ("random", "logreg")


def cli(*args: str) -> None:
    print("$ embedkit " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "embedkit", *args], check=True, cwd=ROOT)


def build_digits() -> Path:
    """sklearn's digits as uint8 images through Lite0 (full frame), a 70/30 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    store = STORES["digits"]
    if store.exists():
        return store
    RUNS.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    images = (digits.images / 16 * 255).astype(np.uint8)  # (N, 8, 8)
    idx = np.arange(len(images))
    train, test = train_test_split(idx, test_size=0.3, stratify=digits.target, random_state=0)
    model = ROOT / "models" / "bench" / "lite0.onnx"
    for split, rows in (("train", train), ("test", test)):
        np.save(RUNS / f"digits-{split}.npy", images[rows])
        np.save(RUNS / f"digits-{split}-labels.npy", digits.target[rows])
        cli("extract", str(model), str(RUNS / f"digits-{split}.npy"),
            "--labels", str(RUNS / f"digits-{split}-labels.npy"), "--split", split,
            "--out", str(store), "--quiet", "--preprocess", "full-frame")  # fmt: skip
    return store


def quality(seeds: int, sets: list[str]) -> None:
    """The baseline and the default loop, one bench folder each (``report`` merges them)."""
    if "digits" in sets:
        build_digits()
    for name in sets:
        for part, (strategy, head) in (("baseline", BASELINE), ("default", DEFAULT)):
            cli("bench", str(STORES[name]), "--labelling", "--seeds", str(seeds),
                "--strategies", strategy, "--heads", head, "--out", str(RUNS / name / part),
                "--quiet")  # fmt: skip


def merge_parts(name: str) -> bool:
    """Copy the chains of every part of one set into ``RUNS/name/runs``; report them."""
    from embedkit.bench.labelling import build_labelling_report

    merged = RUNS / name / "runs"
    found = sorted((RUNS / name).glob("*/runs/labelling__*.json"))
    if not found and not any(merged.glob("labelling__*.json")):
        return False
    merged.mkdir(parents=True, exist_ok=True)
    for record in found:
        if record.parent != merged:
            shutil.copyfile(record, merged / record.name)
    build_labelling_report(RUNS / name)
    return True


# -- speed ---------------------------------------------------------------------------
def blobs(n: int, d: int, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32) * 2
    y = rng.integers(0, k, n)
    X = centres[y] + rng.normal(size=(n, d)).astype(np.float32)
    return X, y


def speed() -> None:
    from embedkit.heads import make_head
    from embedkit.labelling import select

    out = {"loadavg_before": open("/proc/loadavg").read().split()[:3],
           "blas_threads": os.environ.get("OMP_NUM_THREADS", "default (2)")}  # fmt: skip
    for n, d in ((100_000, 1280), (1_000_000, 384)):
        X, _ = blobs(n, d)
        start = time.perf_counter()
        pick = select(X, np.full(n, -1), 100, strategy="auto", seed=0)
        out[f"select_{n}x{d}"] = {"seconds": time.perf_counter() - start, "strategy": pick.strategy}
        print(out[f"select_{n}x{d}"], flush=True)
        del X
    X, y = blobs(100_000, 384)
    labels = np.full(len(y), -1)
    labels[:1000] = y[:1000]
    start = time.perf_counter()
    head = make_head("spread", random_state=0).fit(X, labels)
    out["spread_fit_100000x384"] = {"seconds": time.perf_counter() - start,
                                    "accuracy": float(head.score(X[:5000], y[:5000]))}  # fmt: skip
    print(out["spread_fit_100000x384"], flush=True)
    from embedkit.bench.labelling import LabellingSpec, run_labelling
    from embedkit.rows import from_arrays

    X, y = blobs(10_000, 384, seed=1)
    store = RUNS / "speed-10k.h5"
    if not store.exists():
        splits = np.where(np.arange(len(y)) % 5 == 0, "test", "train")
        from_arrays(store, X, y, splits=splits).close()
    work = RUNS / f"speed-bench-{os.getpid()}"
    start = time.perf_counter()
    run_labelling(store, work, LabellingSpec(), progress=False)
    runs = "4 strategies x 5 budgets x 5 seeds x 2 heads"
    out["bench_labelling_10000"] = {"seconds": time.perf_counter() - start, "runs": runs}
    out["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    print(out, flush=True)
    (RUNS / "speed.json").write_text(json.dumps(out, indent=1))


# -- peers ---------------------------------------------------------------------------
PEER_STRATEGIES = ("UncertaintySampling-margin_sampling", "TypiClust",
                   "ProbCover", "RandomSampling")  # fmt: skip


def peers(seeds: int, sets: list[str]) -> None:
    """scikit-activeml on the same pool/test rows, budgets (cumulative rounds) and logreg."""
    import skactiveml.pool as pool_qs
    from skactiveml.classifier import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    from embedkit.heads import make_head
    from embedkit.heads.rows import select_rows
    from embedkit.store import FeatureStore

    budgets = (1, 2, 5, 10, 20)
    result = {}
    for name in sets:
        with FeatureStore(STORES[name]) as fs:
            rows = select_rows(fs, test=0.2)
            pool = np.union1d(rows.train, rows.val)
            X, y = fs.features(rows=pool), fs.labels(pool)
            X_test, y_test = fs.features(rows=rows.test), fs.labels(rows.test)
        k = len(np.unique(y))
        for strategy in PEER_STRATEGIES:
            cls_name, _, method = strategy.partition("-")
            accs = {b: [] for b in budgets}
            for seed in range(seeds):
                options = {"method": method} if method else {}
                qs = getattr(pool_qs, cls_name)(random_state=seed, **options)
                clf = SklearnClassifier(LogisticRegression(max_iter=2000), classes=np.arange(k),
                                        random_state=seed)  # fmt: skip
                y_pool = np.full(len(y), np.nan)
                for b in budgets:
                    want = b * k - int((~np.isnan(y_pool)).sum())
                    kwargs = {"batch_size": want}
                    if cls_name == "UncertaintySampling":
                        if (~np.isnan(y_pool)).sum() == 0:  # cold start: random, as ours
                            q = pool_qs.RandomSampling(random_state=seed).query(X, y_pool, **kwargs)
                        else:
                            q = qs.query(X, y_pool, clf=clf.fit(X, y_pool), **kwargs)
                    else:
                        q = qs.query(X, y_pool, **kwargs)
                    y_pool[q] = y[q]
                    known = ~np.isnan(y_pool)
                    model = make_head("logreg", random_state=seed)
                    if len(np.unique(y[known])) < 2:
                        acc = float(np.mean(y_test == y[known][0]))
                    else:
                        acc = float(model.fit(X[known], y[known]).score(X_test, y_test))
                    accs[b].append(acc)
            result[f"{name}/{strategy}"] = accs
            print(name, strategy, {b: round(float(np.mean(v)), 3) for b, v in accs.items()},
                  flush=True)  # fmt: skip
            (RUNS / "peers.json").write_text(json.dumps(result, indent=1))


# -- report --------------------------------------------------------------------------
def carried(title: str) -> list[str]:
    """A section imported from the earlier results file, when its part was not re-run."""
    from _harness import markdown

    for record in Records("labelling").all():
        if record.get("imported_from") and record["key"].get("title", "").startswith(title):
            return ["", markdown(record["markdown"]).strip(), "",
                    f"(Not re-run: carried over from the earlier run, `{record['command']}`, "
                    f"recorded {record['created']}.)"]  # fmt: skip
    return []


def _t(values) -> tuple[float, float]:
    from embedkit.bench.metrics import t_interval

    mean, low, high = t_interval(values)
    return mean, high - mean


def _seeds(summary: dict) -> str:
    pairs = {f"{r['strategy']} + {r['head']} {r['seeds']}" for r in summary["table"]}
    return ", ".join(sorted(pairs))


def report() -> None:
    lines = []
    goals = []
    for name in STORES:
        path = RUNS / name / "labelling.json"
        if not merge_parts(name):
            lines += [f"### {name}: not run", ""]
            continue
        summary = json.loads(path.read_text())
        md = (RUNS / name / "labelling.md").read_text()
        cell = {(r["strategy"], r["head"], r["budget"]): r for r in summary["table"]}
        budgets = sorted({r["budget"] for r in summary["table"]})
        png = RESULTS / f"labelling_{name}.png"
        shutil.copyfile(RUNS / name / "labelling.png", png)
        lines += [f"### {name}", "", f"`embedkit bench {STORES[name].name} --labelling "
                  f"--seeds 5`; seeds finished: {_seeds(summary)} (one seed: no interval).", "",
                  md, f"![{name}: accuracy vs labels per class]({png.name})", ""]  # fmt: skip
        if not all((*pair, b) in cell for pair in (DEFAULT, BASELINE) for b in budgets):
            continue
        below = [b for b in budgets
                 if cell[(*DEFAULT, b)]["mean"] < cell[(*BASELINE, b)]["mean"]]  # fmt: skip
        target = cell[(*BASELINE, budgets[-1])]["mean"]
        match = next((b for b in budgets if cell[(*DEFAULT, b)]["mean"] >= target), None)
        goals.append((name, cell, below, match, target))
    lines += ["### Goals (default loop = auto picks (typical) + spread head (graph=auto, "
              "balance=auto))", "",
              "| set | default loop at 10/class | random + logreg at 10/class | budgets where "
              "the default loop is below random + logreg | labels/class for random's 20/class "
              "accuracy |", "|---|---:|---:|---|---:|"]  # fmt: skip
    for name, cell, below, match, target in goals:
        d, r = cell.get((*DEFAULT, 10)), cell.get((*BASELINE, 10))
        lines.append(f"| {name} | {d['mean']:.3f} | {r['mean']:.3f} | {below or 'none'} | "
                     f"{match if match else '> 20'} (target {target:.3f}) |")  # fmt: skip
    lines += ["", "The default loop is what `select` (`--strategy auto`: typical up to 20 labels "
              "per class) and `train --head spread` (`graph=auto`, `balance=auto`: spread over "
              "centred or whitened features, or not at all, with the spread labels as they "
              "come or rebalanced among classes, by 5-fold cross-validation on the labelled "
              "rows) do; the goal table compares its means with random + logreg at the same "
              "budget.", ""]  # fmt: skip
    peers_path = RUNS / "peers.json"
    if peers_path.exists():
        lines += ["", "### scikit-activeml (logreg, same features, budgets, seeds)", "",
                  "| set / strategy | 5/class | 10/class |", "|---|---:|---:|"]  # fmt: skip
        for key, accs in json.loads(peers_path.read_text()).items():
            cells = [f"{m:.3f} ± {h:.3f}" for m, h in (_t(accs[str(b)] if str(b) in accs
                                                       else accs[b]) for b in (5, 10))]  # fmt: skip
            lines.append(f"| {key} | {' | '.join(cells)} |")
    else:
        lines += carried("scikit-activeml")
    speed_path = RUNS / "speed.json"
    if not speed_path.exists():
        lines += carried("Speed")
    else:
        s = json.loads(speed_path.read_text())
        lines += ["", "### Speed (2 shared cores; load average before/after: "
                  f"{' '.join(s['loadavg_before'])} / {' '.join(s['loadavg_after'])}; "
                  f"BLAS threads {s.get('blas_threads', '?')}; one run, under the bench lock)",
                  "", "Synthetic Gaussian blobs (10 classes), float32; in-process library calls.",
                  "",
                  "| task | seconds | goal |", "|---|---:|---:|",
                  f"| select 100 of 100,000 x 1,280 (auto -> "
                  f"{s['select_100000x1280']['strategy']}) "
                  f"| {s['select_100000x1280']['seconds']:.1f} | < 10 |",
                  f"| select 100 of 1,000,000 x 384 | "
                  f"{s['select_1000000x384']['seconds']:.1f} | < 60 |",
                  f"| spread fit, 100,000 x 384 (1,000 labels) | "
                  f"{s['spread_fit_100000x384']['seconds']:.1f} | < 30 |",
                  f"| bench --labelling, 10,000 rows, 4 x 5 x 5 (x 2 heads) | "
                  f"{s['bench_labelling_10000']['seconds']:.1f} | < 180 |"]  # fmt: skip
    text = "\n".join(lines)
    Records("labelling").add_markdown({"report": "runs/labelling"}, text,
                                      supersedes="results/labelling.md")  # fmt: skip
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("quality", "speed", "peers", "report"), default="report")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--sets", default="fmnist,fortunes,digits")
    args = p.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    if args.part == "quality":
        quality(args.seeds, args.sets.split(","))
    elif args.part == "speed":
        speed()
    elif args.part == "peers":
        peers(args.seeds, args.sets.split(","))
    report()


if __name__ == "__main__":
    main()
