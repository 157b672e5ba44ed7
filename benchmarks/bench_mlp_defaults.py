"""The mlp head's default dropout and learning rate, chosen by cross-validation on three stores.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_mlp_defaults.py   # stores/ of the repo
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_mlp_defaults.py --stores /work/main/stores

Issue 23: the pair that ``bench --taps all`` recommends on fortunes through mpnet is
``last`` + mlp. This script scores four settings of the mlp head, ``dropout`` in {0.2,
0.5} x ``lr`` in {3e-3, 1e-3} (0.2 and 3e-3 were the defaults), on the default tap of
each reference store, the way the bench does at ``--shots all``:

- cross-validation accuracy: seed ``s`` fits on the training rows minus fold ``s mod 5``
  of the bench's repeated stratified 5-fold split (``embedkit.bench.data.cv_holdout``)
  and scores that fold; seeds 0-4 are the bench's own folds, seeds 5-9 a reshuffled
  second 5-fold split (the settings differ by less than one 5-fold run can tell apart);
- test accuracy, a description only: seeds 0-4 each fit on all the training rows, as
  the bench's test cells are.

The setting with the highest cross-validation accuracy (10 folds) averaged over the
stores is the default; the test split plays no part in the choice. One record per
(store, setting) in results/mlp_defaults.jsonl; a re-run skips those recorded.

``--bench DIR --note TEXT`` records a finished ``embedkit bench STORE --taps all --out
DIR`` (as ``bench_cgrid.py --bench`` does): what the defaults do to each store's pick.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import Records

ROOT = Path(__file__).resolve().parents[1]
STORES = {"fortunes-mpnet.h5": "last", "fortunes-minilm.h5": "last", "fmnist-lite0.h5": "pool"}
SETTINGS = [{"dropout": d, "lr": lr} for d in (0.2, 0.5) for lr in (3e-3, 1e-3)]
FORMER = {"dropout": 0.2, "lr": 3e-3}  # the defaults before issue 23
CV_SEEDS, TEST_SEEDS = range(10), range(5)


def measure(path: Path, tap: str, setting: dict) -> dict:
    """Per-fold cross-validation and per-seed test accuracy of mlp with ``setting``."""
    import torch

    from embedkit.bench.data import cv_holdout, load_bench_data
    from embedkit.heads import make_head

    torch.set_num_threads(1)
    data = load_bench_data(path, tap=tap)
    X, y, pool = data.X, data.y, np.asarray(data.train)

    def accuracy(fit: np.ndarray, held: np.ndarray, seed: int) -> float:
        head = make_head("mlp", random_state=seed, **setting).fit(X[fit], y[fit])
        return float(np.mean(head.predict(X[held]) == y[held]))

    cpu = time.process_time()
    cv = [accuracy(*cv_holdout(y, pool, s), s) for s in CV_SEEDS]
    test = [accuracy(pool, data.test, s) for s in TEST_SEEDS]
    return {"cv": cv, "test": test, "cpu_s": time.process_time() - cpu}


def choose(records: list[dict]) -> dict:
    """The setting with the best cross-validation accuracy averaged over the stores."""
    records = [r for r in records if "setting" in r["key"]]
    by_setting: dict[str, list[float]] = {}
    for r in records:
        by_setting.setdefault(_name(r["key"]["setting"]), []).append(np.mean(r["cv"]))
    best = max(by_setting, key=lambda name: np.mean(by_setting[name]))
    return next(r["key"]["setting"] for r in records if _name(r["key"]["setting"]) == best)


def render(records: list[dict]) -> str:
    """The table of settings x stores, the choice, and each store's paired difference."""
    stores = list(dict.fromkeys(r["key"]["store"] for r in records))
    cell = {(r["key"]["store"], _name(r["key"]["setting"])): r for r in records}
    names = list(dict.fromkeys(_name(r["key"]["setting"]) for r in records))
    chosen = _name(choose(records))
    lines = [
        "### The mlp head's defaults, chosen by cross-validation (issue 23)",
        "",
        "mlp on each store's default tap at `--shots all`. CV: accuracy on held-out folds of "
        "the training rows, seeds 0-4 = the bench's 5 folds, seeds 0-9 adding a reshuffled "
        "second 5-fold split; test: mean of 5 seeds fitted on all training rows, shown, never "
        "chosen on. The default is the setting with the best CV (10 folds) averaged over the "
        "stores.",
        "",
        "| setting | " + " | ".join(f"{s}: CV 5 / 10 folds | test" for s in stores)
        + " | mean CV (10) |",
        "| --- | " + " | ".join("---: | ---:" for _ in stores) + " | ---: |",
    ]  # fmt: skip
    for name in names:
        rows = [cell.get((s, name)) for s in stores]
        cells = [
            f"{np.mean(r['cv'][:5]):.4f} / {np.mean(r['cv']):.4f} | {np.mean(r['test']):.4f}"
            if r else "- | -" for r in rows
        ]  # fmt: skip
        mean = np.mean([np.mean(r["cv"]) for r in rows if r])
        mark = "**" if name == chosen else ""
        lines.append(f"| {mark}{name}{mark} | " + " | ".join(cells) + f" | {mean:.4f} |")
    former = _name(FORMER)
    diffs = []
    for s in stores:
        a, b = cell.get((s, chosen)), cell.get((s, former))
        if a and b and chosen != former:
            d = np.array(a["cv"]) - np.array(b["cv"])
            diffs.append(f"{s} {d.mean():+.4f} / {d.std(ddof=1) / np.sqrt(len(d)):.4f}")
    lines += [
        "",
        f"Chosen: **{chosen}**. Paired per-fold CV difference, chosen minus the former "
        f"default {former} (mean / standard error over 10 folds): {'; '.join(diffs)}.",
    ]
    cpu = {name: sum(r["cpu_s"] for r in records if _name(r["key"]["setting"]) == name)
           for name in names}  # fmt: skip
    load = records[-1]["machine"]["load"][0]
    lines += ["", "CPU s per setting, its 15 fits on each store (one torch thread, measured one "
              "after another): " + "; ".join(f"{n} {c:.0f}" for n, c in cpu.items()) + f". Load "
              f"average {load:.1f} at the last record. Reproduce: `PYTHONPATH=$PWD "
              ".venv/bin/python benchmarks/bench_mlp_defaults.py`."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _name(setting: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in setting.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default=str(ROOT / "stores"), help="folder of the stores")
    parser.add_argument("--bench", help="record this finished bench folder instead")
    parser.add_argument("--note", default="", help="--bench: a line said before its table")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    records = Records("mlp_defaults")
    if args.bench:
        from bench_cgrid import bench_lines

        lines, record = bench_lines(Path(args.bench))
        text = "\n".join([args.note, "", *lines]).strip()
        records.add_markdown({"bench": Path(args.bench).name}, text, **record)
        return print(text)
    for store, tap in STORES.items():
        path = Path(args.stores) / store
        if not path.exists():
            print(f"skip: {path} missing (benchmarks/build_reference_stores.py)")
            continue
        for setting in SETTINGS:
            key = {"store": store, "tap": tap, "setting": setting}
            if not records.done(key):
                records.add(key, measure(path, tap, setting))
                print(f"{store} {_name(setting)}: done", flush=True)
    print(records.section(render))


if __name__ == "__main__":
    main()
