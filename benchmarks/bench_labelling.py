"""Sparse labels: the labelling loop's accuracy on three stores, its speed, and a peer.

    .venv/bin/python benchmarks/bench_labelling.py --part quality    # 3 stores x 5 seeds
    flock /tmp/embedkit-bench.lock .venv/bin/python benchmarks/bench_labelling.py --part speed
    .venv/bin/python benchmarks/bench_labelling.py --part peers      # needs .venv-peers
    .venv/bin/python benchmarks/bench_labelling.py --part guard      # spread at 1-2/class
    .venv/bin/python benchmarks/bench_labelling.py --part report     # results/labelling.jsonl

1. **quality**: ``embedkit bench STORE --labelling`` (1, 2, 5, 7, 10, 20 labels per class
   x 5 seeds: bench's default budgets and 7, the goal's) of the default loop (typical
   picks + the spread head) and of the baseline (random picks + logreg) on the reference
   stores ``stores/fmnist-lite0.h5`` and ``stores/fortunes-minilm.h5``, and on
   scikit-learn's digits (8x8, 1,797 images) through Lite0 (built here, 70/30 split).
   Every step reads the loop's taps (the store's default tap joined with the taps whose
   neighbours agree with it: ``blocks.14+blocks.15+pool`` on the Lite0 stores, ``last``
   on fortunes); ``all_labels.json``: logreg on every pool label of the same taps.
   The default loop is what ``select`` + ``train --head spread`` do without options:
   ``auto`` picks ``typical`` up to 20 labels per class, clustering PCA-whitened rows
   where the features' effective rank is under 128 (the two Lite0 stores) and centred
   rows otherwise (fortunes); ``spread`` (``graph="auto"``, ``alpha="auto"``,
   ``balance="auto"``) cross-validates on the labelled rows whether to spread over
   centred or whitened features or not at all, how far (alpha 0.9 or 0.99), and whether
   to rebalance the spread labels among classes.
2. **speed** (synthetic float32 Gaussian blobs; run under the bench lock): ``select`` of
   100 rows from 100,000 x 1,280 and from 1,000,000 x 384; a ``spread`` fit on 100,000
   rows; ``bench --labelling`` of 4 strategies x 5 budgets x 5 seeds on 10,000 rows.
3. **peers**: scikit-activeml's strategies (from ``.venv-peers``, never a dependency) on
   the same features, budgets, head (logreg) and seeds.
4. **guard**: the default loop's typical picks at 1 and 2 labels per class on the
   three sets; ``spread`` as the default loop fits it (cross-validating at every budget),
   with ``min_cv_labels=3`` (the centred graph below 3 labels in a class), and over each
   fixed graph without any cross-validation.

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
QUALITY_BUDGETS = "1,2,5,7,10,20"  # labels per class: bench's default budgets and 7 (goal: <= 7)
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
        all_labels(name)
        for part, (strategy, head) in (("baseline", BASELINE), ("default", DEFAULT)):
            cli("bench", str(STORES[name]), "--labelling", "--seeds", str(seeds),
                "--strategies", strategy, "--heads", head, "--budgets", QUALITY_BUDGETS,
                "--out", str(RUNS / name / part), "--quiet")  # fmt: skip


def all_labels(name: str) -> dict:
    """Logreg on every pool label, on the loop's taps: the goal's reference (5 points)."""
    from embedkit.heads import make_head

    X, y, X_test, y_test, taps = pool_and_test(name)
    accuracy = float(make_head("logreg", random_state=0).fit(X, y).score(X_test, y_test))
    out = {"taps": taps, "pool": len(y), "accuracy": accuracy}
    (RUNS / name / "all_labels.json").write_text(json.dumps(out))
    print(name, out, flush=True)
    return out


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


def _cpu() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    t = os.times()
    return t.user + t.system


def _timed(out: dict, name: str, run, **extra) -> None:
    """Run ``run()``; record its wall and CPU seconds (and ``extra(result)``) as ``out[name]``."""
    wall, cpu = time.perf_counter(), _cpu()
    result = run()
    out[name] = {"seconds": time.perf_counter() - wall, "cpu_seconds": _cpu() - cpu,
                 **{key: get(result) for key, get in extra.items()}}  # fmt: skip
    print(name, out[name], flush=True)


def speed() -> None:
    from embedkit.bench.labelling import run_labelling
    from embedkit.heads import make_head
    from embedkit.labelling import select
    from embedkit.rows import from_arrays

    out = {"loadavg_before": open("/proc/loadavg").read().split()[:3],
           "blas_threads": os.environ.get("OMP_NUM_THREADS", "default (2)")}  # fmt: skip
    for n, d in ((100_000, 1280), (1_000_000, 384)):
        X, _ = blobs(n, d)
        _timed(out, f"select_{n}x{d}",
               lambda X=X, n=n: select(X, np.full(n, -1), 100, strategy="auto", seed=0),
               strategy=lambda pick: pick.strategy)  # fmt: skip
        del X
    X, y = blobs(100_000, 384)
    labels = np.full(len(y), -1)
    labels[:1000] = y[:1000]
    _timed(out, "spread_fit_100000x384", lambda: make_head("spread", random_state=0).fit(X, labels),
           accuracy=lambda head: float(head.score(X[:5000], y[:5000])))  # fmt: skip
    X, y = blobs(10_000, 384, seed=1)
    store = RUNS / "speed-10k.h5"
    if not store.exists():
        splits = np.where(np.arange(len(y)) % 5 == 0, "test", "train")
        from_arrays(store, X, y, splits=splits).close()
    work = RUNS / f"speed-bench-{os.getpid()}"
    _timed(out, "bench_labelling_10000", lambda: run_labelling(store, work, progress=False),
           runs=lambda _: "4 strategies x 5 budgets x 5 seeds x 2 heads")  # fmt: skip
    out["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    print(out, flush=True)
    (RUNS / "speed.json").write_text(json.dumps(out, indent=1))


# -- peers ---------------------------------------------------------------------------
def pool_and_test(name: str):
    """Pool (every labelled non-test row) and test rows of a set as bench splits and reads them.

    On the loop's taps (:func:`embedkit.heads.tapsets.loop_taps`); the last item names them.
    """
    from embedkit.heads.rows import select_rows
    from embedkit.heads.tapsets import loop_taps, read_joined, tap_set_name
    from embedkit.store import FeatureStore

    with FeatureStore(STORES[name]) as fs:
        rows = select_rows(fs, test=0.2)
        pool = np.union1d(rows.train, rows.val)
        taps = loop_taps(fs, pool)
        X, X_test = read_joined(fs, taps, pool, pool, rows.test)[1]  # (P, D), (T, D)
        y, y_test = fs.labels(pool), fs.labels(rows.test)
    return X, y, X_test, y_test, tap_set_name(taps)


PEER_STRATEGIES = ("UncertaintySampling-margin_sampling", "TypiClust",
                   "ProbCover", "RandomSampling")  # fmt: skip


def peers(seeds: int, sets: list[str]) -> None:
    """scikit-activeml on the same pool/test rows, budgets (cumulative rounds) and logreg."""
    import skactiveml.pool as pool_qs
    from skactiveml.classifier import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    from embedkit.heads import make_head

    budgets = (1, 2, 5, 10, 20)
    result = {}
    for name in sets:
        X, y, X_test, y_test, result[f"{name}/taps"] = pool_and_test(name)
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


# -- guard: spread's graph at few labels ---------------------------------------------
GUARD_BUDGETS = (1, 2)  # labels per class, one typical chain per seed
GUARD_HEADS = {"auto (always CV)": {}, "min_cv_labels=3": {"min_cv_labels": 3},
               "centre": {"graph": "centre", "alpha": 0.9, "balance": "none"},
               "whiten": {"graph": "whiten", "alpha": 0.9, "balance": "none"}}  # fmt: skip


def _quality_cells(name: str) -> dict:
    """(seed, budget) -> accuracy of the default loop in the quality run, if it ran."""
    cells = {}
    for path in (RUNS / name / "default" / "runs").glob("labelling__typical__s*.json"):
        record = json.loads(path.read_text())
        for c in record["cells"]:
            if c["head"] == "spread" and record["config"].get("strategies") == ["typical"]:
                cells[(record["seed"], c["budget"])] = c["accuracy"]
    return cells


def guard(seeds: int, sets: list[str]) -> None:
    """The default loop's picks; spread with graph=auto (always CV) and each fixed graph.

    ``auto (always CV)`` is read from the quality run's records where they hold the cell
    (the same picks and head), else fitted.
    """
    from embedkit.heads import make_head
    from embedkit.labelling import select

    for name in sets:
        path, known = RUNS / f"guard-{name}.json", _quality_cells(name)
        rows = json.loads(path.read_text()) if path.exists() else []
        done = {(r["seed"], r["budget"]): r for r in rows}  # a re-run resumes
        found = []
        X, y, X_test, y_test, _ = pool_and_test(name)
        k = len(np.unique(y))
        for seed in range(seeds):
            labels = np.full(len(y), -1)
            for budget in GUARD_BUDGETS:
                picked = select(X, labels, budget * k - int((labels >= 0).sum()),
                                strategy="typical", seed=seed).rows  # fmt: skip
                labels[picked] = y[picked]
                if (seed, budget) in done:
                    found.append(done[(seed, budget)])
                    continue
                fewest = int(np.unique(labels[labels >= 0], return_counts=True)[1].min())
                row = {"set": name, "seed": seed, "budget": budget, "fewest": fewest}
                for col, params in GUARD_HEADS.items():
                    if col.startswith("auto") and (seed, budget) in known:
                        row[col], row["auto_from"] = known[(seed, budget)], "quality run"
                        continue
                    head = make_head("spread", random_state=seed, **params)
                    row[col] = float(head.fit(X, labels).score(X_test, y_test))
                found.append(row)
                print(row, flush=True)
                path.write_text(json.dumps(found, indent=1))


def guard_lines() -> list[str]:
    """Mean accuracy per set and budget of spread with auto and each fixed choice."""
    found = [r for path in sorted(RUNS.glob("guard-*.json")) for r in json.loads(path.read_text())]
    cols = list(GUARD_HEADS)
    lines = ["", "### spread at few labels (typical picks on the loop's taps; mean over the seeds "
             "run)", "",
             "| set | labels/class | seeds | seeds with a class under 3 labels | "
             + " | ".join(cols) + " |", "|---|---:|---:|---:|" + "---:|" * len(cols)]  # fmt: skip
    for name in dict.fromkeys(r["set"] for r in found):
        for budget in GUARD_BUDGETS:
            rows = [r for r in found if (r["set"], r["budget"]) == (name, budget)]
            if rows:
                means = [f"{np.mean([r[c] for r in rows]):.3f}" for c in cols]
                few = sum(r["fewest"] < 3 for r in rows)
                lines.append(f"| {name} | {budget} | {len(rows)} | {few} | {' | '.join(means)} |")
    return lines + ["", "`auto (always CV)`: the default spread (where the quality run above "
                    "holds the cell, read from it: the same picks and head); `min_cv_labels=3`: "
                    "under 3 labels in a class, the centred graph with alpha and balance by "
                    "cross-validation; `centre` and `whiten`: a fixed graph, alpha 0.9, no "
                    "cross-validation at all."]  # fmt: skip


# -- report --------------------------------------------------------------------------
ABLATIONS = {  # runs/labelling/<folder>/<set>/labelling.json: other default loops, kept
    "before": "typical on centred features; spread graph centre/whiten/none by CV, alpha 0.9",
    "graph-rule": "typical on whitened features where the rule says; graph by the same rule "
    "(not shipped: on Gaussian blobs it spreads worse and slower)",
    "spread-margin": "typical picks up to 5 labels per labelled class, then spread-margin "
    "alone; spread leaves spreading only by a clear CV lead (not shipped: on fortunes it "
    "stops finding classes)",
    "pooltap": "whitened picks where the rule says; graph and alpha by CV; on the default "
    "tap alone (`pool`; fortunes reads `last` alone either way)",
}


def ablation_lines() -> list[str]:
    """The default loop's means per budget now and in the kept earlier versions."""
    rows = []
    for name in STORES:
        for folder, what in (
            *ABLATIONS.items(),
            ("", "now: as `pooltap`, on the loop's taps (blocks.14+blocks.15+pool on Lite0)"),
        ):
            path = RUNS / folder / name / "labelling.json"
            if path.exists():
                loops = (DEFAULT, ("auto", "spread"))  # the default loop's picks, or auto's
                cells = {r["budget"]: r["mean"] for r in json.loads(path.read_text())["table"]
                         if (r["strategy"], r["head"]) in loops}  # fmt: skip
                rows.append(
                    f"| {name} | {what} | "
                    + " | ".join(
                        f"{cells[b]:.3f}" if b in cells else "" for b in (1, 2, 5, 7, 10, 20)
                    )
                    + " |"
                )
    if not rows:
        return []
    return ["", "### The default loop, version by version (mean over 5 seeds)", "",
            "| set | version | 1/class | 2/class | 5/class | 7/class | 10/class | 20/class |",
            "|---|---|---:|---:|---:|---:|---:|---:|", *rows, "",
            "`before`: the previous session's summaries (chains of 1, 2, 5, 10, 20 labels "
            "per class); `graph-rule`: this session's chains with 7 added, kept in "
            "`runs/labelling/graph-rule/`; `spread-margin`: `bench --labelling --strategies "
            "auto` with `auto` taking `spread-margin` above 5 labels per labelled class, kept "
            "in `runs/labelling/spread-margin/`; `pooltap`: the loop before it read the "
            "loop's taps, kept in `runs/labelling/pooltap/`. Seeds 0-4 each; the picks of "
            "`graph-rule` and `pooltap` are the same (the same picking rule), only the head "
            "differs."]  # fmt: skip


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


def _secs(task: dict) -> str:
    """``wall | CPU`` cells of one speed task (CPU: not recorded before it was)."""
    cpu = task.get("cpu_seconds")
    return f"{task['seconds']:.1f} | " + (f"{cpu:.1f}" if cpu is not None else "")


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
              "alpha=auto, balance=auto), on the loop's taps)", "",
              "| set | the loop's taps | default loop at 10/class | all-label logreg (same "
              "taps) | random + logreg at 10/class | budgets where the default loop is below "
              "random + logreg | labels/class for random's 20/class accuracy |",
              "|---|---|---:|---:|---:|---|---:|"]  # fmt: skip
    for name, cell, below, match, target in goals:
        d, r = cell.get((*DEFAULT, 10)), cell.get((*BASELINE, 10))
        ref = RUNS / name / "all_labels.json"
        ref = json.loads(ref.read_text()) if ref.exists() else {"taps": "", "accuracy": np.nan}
        lines.append(f"| {name} | {ref['taps']} | {d['mean']:.3f} | {ref['accuracy']:.3f} | "
                     f"{r['mean']:.3f} | {below or 'none'} | "
                     f"{match if match else '> 20'} (target {target:.3f}) |")  # fmt: skip
    lines += ["", "The loop's taps: the store's default tap joined with each other vector tap "
              "whose rows' 10 nearest neighbours share at least half with the default tap's "
              "(`embedkit.heads.tapsets.loop_taps`; no labels); select, bench --labelling "
              "and train of a semi-supervised head read them unless `--tap` is given, and "
              "so do random + logreg and the all-label logreg here. "
              "The default loop is what `select` (`--strategy auto`: typical up to 20 labels "
              "per class, clustering PCA-whitened features where their effective rank is "
              "under 128 of more dimensions, centred ones otherwise) and `train --head "
              "spread` (`graph=auto`: a graph on the same features; `alpha=auto`, "
              "`balance=auto`: spread near or far, with the spread labels as they come or "
              "rebalanced among classes, or not at all, by 5-fold cross-validation on the "
              "labelled rows) do; the goal table compares its means with random + logreg "
              "at the same budget.", ""]  # fmt: skip
    lines += ablation_lines()
    peers_path = RUNS / "peers.json"
    if peers_path.exists():
        peers_run = json.loads(peers_path.read_text())
        taps = {k: v for k, v in peers_run.items() if k.endswith("/taps")}
        lines += ["", "### scikit-activeml (logreg, same features, budgets, seeds)", "",
                  "Taps: " + (", ".join(f"{k[:-5]} {v}" for k, v in taps.items()) or "each "
                  "store's default tap (run before the loop read the loop's taps)"), "",
                  "| set / strategy | 5/class | 10/class |", "|---|---:|---:|"]  # fmt: skip
        for key, accs in ((k, v) for k, v in peers_run.items() if k not in taps):
            cells = [f"{m:.3f} ± {h:.3f}" for m, h in (_t(accs[str(b)] if str(b) in accs
                                                       else accs[b]) for b in (5, 10))]  # fmt: skip
            lines.append(f"| {key} | {' | '.join(cells)} |")
    else:
        lines += carried("scikit-activeml")
    if any(RUNS.glob("guard-*.json")):
        lines += guard_lines()
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
                  "| task | seconds | CPU seconds (user + sys) | goal (seconds) |",
                  "|---|---:|---:|---:|",
                  f"| select 100 of 100,000 x 1,280 (auto -> "
                  f"{s['select_100000x1280']['strategy']}) "
                  f"| {_secs(s['select_100000x1280'])} | < 10 |",
                  f"| select 100 of 1,000,000 x 384 | {_secs(s['select_1000000x384'])} | < 60 |",
                  f"| spread fit, 100,000 x 384 (1,000 labels) | "
                  f"{_secs(s['spread_fit_100000x384'])} | < 30 |",
                  f"| bench --labelling, 10,000 rows, 4 x 5 x 5 (x 2 heads) | "
                  f"{_secs(s['bench_labelling_10000'])} | < 180 |"]  # fmt: skip
        if s.get("previous"):
            lines += ["", s["previous"]]
    text = "\n".join(lines)
    Records("labelling").add_markdown({"report": "runs/labelling"}, text,
                                      supersedes="results/labelling.md")  # fmt: skip
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("quality", "speed", "peers", "guard", "report"),
                   default="report")  # fmt: skip
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
    elif args.part == "guard":
        guard(args.seeds, args.sets.split(","))
    report()


if __name__ == "__main__":
    main()
