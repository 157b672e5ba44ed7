"""Why logregcv scored 0.830 on fortunes/mpnet's last layer where the issue's hand run got 0.841.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_cgrid.py            # stores/fortunes-mpnet.h5
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_cgrid.py --texts 0  # no torch parity check
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_cgrid.py --bench DIR  # a finished bench

The hand recipe of issue 23: the store's ``last`` tap (mean pooled, L2-normed), logistic
regression with ``C`` chosen by 5-fold cross-validation of the training rows. This script
checks each suspect side by side and records what it finds (results/cgrid.jsonl):

1. the features: the store's ``last`` rows against sentence-transformers' ``encode`` of
   the same texts (when it is installed), the longest texts included (truncation at 384);
2. the choice of ``C``: cross-validated accuracy of the training rows per ``C`` on two
   fold splits (unshuffled, as ``LogisticRegressionCV`` folds; shuffled with seed 0, as the
   bench's), the ``C`` each grid picks, and, only as a description, the test accuracy of
   each ``C`` fitted on all training rows (nothing here is chosen on it);
3. the cost of ``logregcv`` with each grid (one fit on all training rows; CPU seconds).

``--bench DIR`` instead records a finished ``embedkit bench STORE ... --out DIR``: each
head's cross-validation and test accuracy at the largest shot level, the recommended pair,
and the CPU seconds of each head's runs (what logregcv would add to a tap sweep).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import Records

ROOT = Path(__file__).resolve().parents[1]
DECADES = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
TOP = 8  # cells of a bench shown, best CV first
SHOWN = (0.3, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)  # the C values whose scores are tabled


def parity(store: Path, n: int) -> str:
    """Cosine of the store's ``last`` rows to sentence-transformers' encode of ``n`` texts."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return "sentence-transformers is not installed: no parity check."
    from embedkit.backbones.install import installed_folder
    from embedkit.bench.data import load_bench_data
    from embedkit.datasets import load_fortunes
    from embedkit.store import FeatureStore

    texts, _ = load_fortunes(ROOT / "data" / "fortunes")
    with FeatureStore(str(store)) as fs:
        index = [int(i.split("/")[1]) for i in np.asarray(fs.ids()).astype(str)]
    X = load_bench_data(store, tap="last").X  # (N, 768), rows in store order, all labelled
    by_length = np.argsort([-len(texts[i]) for i in index])
    rows = np.concatenate([by_length[: n // 2], by_length[-(n - n // 2) :]])
    model = SentenceTransformer(str(installed_folder()), device="cpu")
    E = model.encode([texts[index[r]] for r in rows], batch_size=8)
    cos = np.sum(E * X[rows], 1) / np.linalg.norm(E, axis=1) / np.linalg.norm(X[rows], axis=1)
    norms = np.linalg.norm(X, axis=1)
    return (
        f"Features: the store's `last` rows have L2 norms {norms.min():.6f} to "
        f"{norms.max():.6f}; against sentence-transformers' `encode` (max_seq_length "
        f"{model.max_seq_length}) of {n} texts, the {n // 2} longest included, cosine "
        f"{cos.min():.7f} to {cos.max():.7f}, max abs difference "
        f"{np.abs(E - X[rows]).max():.1e}: the tap is mean pooled and normalised as "
        "sentence-transformers does, truncation included."
    )


def cv_by_c(X, y, Cs, shuffle: bool) -> np.ndarray:
    """Mean accuracy over 5 stratified folds of (X, y), per C (warm-started along Cs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(5, shuffle=shuffle, random_state=0 if shuffle else None)
    scores = np.zeros((5, len(Cs)))
    for f, (a, b) in enumerate(folds.split(X, y)):
        model = LogisticRegression(max_iter=5000, warm_start=True)
        for j, C in enumerate(Cs):
            scores[f, j] = model.set_params(C=C).fit(X[a], y[a]).score(X[b], y[b])
    return scores.mean(0)


def c_grid(store: Path) -> tuple[list[str], dict]:
    from sklearn.linear_model import LogisticRegression

    from embedkit.bench.data import load_bench_data
    from embedkit.heads import make_head
    from embedkit.heads._sklearn import HALF_DECADES

    d = load_bench_data(store, tap="last")
    X, y = d.X.astype(np.float64), d.y
    Xtr, ytr, Xte, yte = X[d.train], y[d.train], X[d.test], y[d.test]
    Cs = sorted(set(SHOWN) | set(HALF_DECADES[3:8]) | {1.0, 10.0})
    cv = {name: cv_by_c(Xtr, ytr, Cs, shuffle) for name, shuffle in
          (("unshuffled", False), ("shuffled, seed 0", True))}  # fmt: skip
    test = [LogisticRegression(C=C, max_iter=5000).fit(Xtr, ytr).score(Xte, yte) for C in Cs]
    shown = " | ".join(f"{t:.4f}" for t in test)
    lines = [
        f"Logistic regression on `last`, {len(d.train):,} training rows, 5-fold CV accuracy "
        "per C; the test row describes, it picks nothing:",
        "",
        "| | " + " | ".join(f"C={C:g}" for C in Cs) + " |",
        "| --- | " + " | ".join("---:" for _ in Cs) + " |",
    ]
    for name, scores in cv.items():
        lines.append(f"| CV, {name} | " + " | ".join(f"{s:.4f}" for s in scores) + " |")
    lines.append("| test (fit on all training rows) | " + shown + " |")
    picks, record = [], {"Cs": Cs, "cv": {k: v.tolist() for k, v in cv.items()}, "test": test}
    for label, grid in (("whole decades", DECADES), ("half decades (today's default)",
                                                    HALF_DECADES)):  # fmt: skip
        start, cpu = time.perf_counter(), time.process_time()
        head = make_head("logregcv", Cs=grid).fit(Xtr.astype(np.float32), ytr)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        acc = head.score(Xte.astype(np.float32), yte)
        picks.append(
            f"- logregcv, {label} ({len(grid)} values, 0.01 to 1000): chooses C = "
            f"{head.C_:g}, test {acc:.4f}; one fit {seconds:.0f} s wall, {cpu:.0f} s CPU."
        )
        record[label] = {"C": head.C_, "test": acc, "seconds": seconds, "cpu_s": cpu}
    return lines + [""] + picks, record


def bench_lines(out: Path) -> tuple[list[str], dict]:
    """A finished bench: per head CV and test at the top shot level, the pick, CPU seconds."""
    from embedkit.bench.choose import recommend
    from embedkit.bench.records import read_records
    from embedkit.bench.report import build_report
    from embedkit.bench.table import heads_in_order

    table = build_report(out, plots=False)
    best, cpu = recommend(table), {}
    for r in read_records(out / "runs"):
        key = (r["tap"], r["head"])
        cpu[key] = cpu.get(key, 0.0) + float(r.get("cpu_s") or 0.0)
    top = max((r["shots"] for r in table.rows), key=lambda v: float("inf") if v == "all" else v)
    lines = [
        f"`embedkit bench {Path(table.info['source']['store']).name} --taps "
        f"{','.join(table.taps)} --heads {','.join(heads_in_order(table.rows))} --shots all "
        f"--seeds {table.info.get('seeds', '?')}` (out `{out.name}`; the seeds are the folds of "
        f"a 5-fold CV of the training rows); recommended pair: tap `{best['tap']}` + "
        f"`{best['head']}`.",
        "",
        f"The {TOP} best cells by CV accuracy:",
        "",
        "| tap | head | CV accuracy | test accuracy | CPU s, its 5 runs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    cells = sorted((r for r in table.rows if r["shots"] == top),
                   key=lambda r: -(r.get("val_accuracy_mean") or 0))  # fmt: skip
    for r in cells[:TOP]:
        mark = "**" if r is best else ""
        lines.append(
            f"| `{r['tap']}` | {mark}{r['head']}{mark} | {r['val_accuracy_mean']:.3f} | "
            f"{r['accuracy_mean']:.3f} | {cpu.get((r['tap'], r['head']), 0):.0f} |"
        )
    per_head = {}
    for (_, head), seconds in cpu.items():
        per_head[head] = per_head.get(head, 0.0) + seconds
    total = sum(per_head.values())
    shares = ", ".join(f"{h} {per_head[h]:.0f}" for h in heads_in_order(table.rows))
    record = {"recommended": [best["tap"], best["head"]], "cpu_s": per_head,
              "cells": [{k: r.get(k) for k in ("tap", "head", "val_accuracy_mean",
                                               "accuracy_mean")} for r in cells]}  # fmt: skip
    lines += ["", "Paired per-fold difference of the pick's CV accuracy minus each other head's "
              "(mean / standard error over the 5 folds; within noise when mean <= SE): "
              + "; ".join(_paired(best, r) for r in cells[:TOP] if r is not best) + ".",
              "", f"CPU seconds of the whole bench, {total:.0f}, by head: {shares}."
              "", "CPU seconds are those of the bench's workers (one BLAS thread each): each "
              "head's fits on 4/5 of the training rows for every fold, plus its fit(s) on all "
              "of them. Reproduce: `embedkit bench STORE ... --out DIR`, then "
              "`benchmarks/bench_cgrid.py --bench DIR`."]  # fmt: skip
    return lines, record


def _paired(best: dict, row: dict) -> str:
    a, b = best["val_seeds"], row["val_seeds"]
    diff = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    return f"{row['tap']} + {row['head']} {diff.mean():.4f} / {se:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=str(ROOT / "stores" / "fortunes-mpnet.h5"))
    parser.add_argument("--texts", type=int, default=8, help="texts for the parity check")
    parser.add_argument("--bench", help="record this finished bench folder instead")
    args = parser.parse_args()
    if args.bench:
        lines, record = bench_lines(Path(args.bench))
        load = os.getloadavg()[0]
        text = "\n".join([*lines, "", f"Load average {load:.1f} at the record."])
        Records("cgrid").add_markdown({"bench": Path(args.bench).name}, text, **record)
        return print(text)
    store = Path(args.store)
    if not store.exists():
        print(f"skip: {store} missing (build_reference_stores.py --only fortunes-mpnet)")
        return
    warnings.filterwarnings("ignore")
    lines = [parity(store, args.texts), ""] if args.texts else []
    table, record = c_grid(store)
    load = os.getloadavg()
    text = "\n".join([
        "### Fortunes on mpnet: the hand figure 0.841, and the C grid (issue 23)", "",
        f"Store `{store.name}`; 2 CPU cores shared with other jobs, load average "
        f"{load[0]:.1f} at the end. Reproduce: `PYTHONPATH=$PWD .venv/bin/python "
        f"benchmarks/bench_cgrid.py --texts {args.texts}`.", "", *lines, *table,
    ])  # fmt: skip
    Records("cgrid").add_markdown({"store": store.name, "texts": args.texts}, text, **record)
    print(text)


if __name__ == "__main__":
    main()
