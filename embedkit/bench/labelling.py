"""``embedkit bench --labelling``: simulate the labelling loop on a fully labelled store.

The train rows' labels are hidden; for each strategy and seed, rounds of selection reveal
labels up to each budget (labels per class, cumulative: a round picks only the new
labels, given those revealed so far), and after each round every head is fitted and
scored on the test rows. Uncertainty strategies (margin, entropy, hybrid) start cold with
a random first round, as active learning does. Semi-supervised heads (spread, selftrain)
also read the pool's unlabelled rows. One JSON record per (strategy, seed) in
``OUT/runs/`` (a re-run skips the chains already done), then ``labelling.md``,
``labelling.csv``, ``labelling.png`` and ``labelling.json`` (the best strategy per
budget, read by ``embedkit select --strategy auto --record``).

    embedkit bench feats.h5 --labelling --out bench-labelling/
    embedkit bench feats.h5 --labelling --strategies random,typical --budgets 1,5 --out b/
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedkit.bench.metrics import t_interval
from embedkit.bench.plots import figure, save_figure
from embedkit.bench.records import SCHEMA, config_hash, done_runs, read_records, write_record
from embedkit.errors import UserInputError, check_known
from embedkit.files import write_bytes_atomic
from embedkit.heads.registry import head_record, make_head
from embedkit.heads.rows import select_rows
from embedkit.heads.tapsets import loop_taps, read_joined, tap_set_name
from embedkit.labelling.strategies import STRATEGIES, UNCERTAINTY, select
from embedkit.progress import Progress
from embedkit.store import FeatureStore

BASELINE = ("random", "logreg")  # what every other (strategy, head) is measured against


@dataclass(frozen=True)
class LabellingSpec:
    """What the simulation compares.

    Examples
    --------
    >>> LabellingSpec(budgets="5,1", strategies="random,typical").budgets
    (1, 5)
    """

    strategies: tuple[str, ...] = ("random", "typical", "coverage", "hybrid")
    budgets: tuple[int, ...] = (1, 2, 5, 10, 20)  # labels per class, cumulative rounds
    seeds: int = 5  # seeds 0 .. seeds-1: each its own selection chain and head seeds
    heads: tuple[str, ...] = ("logreg", "spread")  # supervised and semi-supervised

    def __post_init__(self):
        for name in ("strategies", "heads"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, tuple(v.strip() for v in value.split(",") if v))
        if isinstance(self.budgets, str):
            try:
                budgets = tuple(int(b) for b in self.budgets.split(","))
            except ValueError:
                raise UserInputError(
                    f"--budgets {self.budgets!r}: labels per class, e.g. 1,2,5,10,20"
                ) from None
            object.__setattr__(self, "budgets", budgets)
        if not self.budgets or min(self.budgets) < 1:
            raise UserInputError(f"--budgets {self.budgets}: positive labels per class")
        object.__setattr__(self, "budgets", tuple(sorted(set(self.budgets))))
        check_known(self.strategies, ("auto", *STRATEGIES), "strategy")  # auto: select's
        for head in self.heads:
            head_record(head, " in --heads")


def run_labelling(store, out, spec: LabellingSpec = LabellingSpec(), *, tap=None,
                  progress: bool = True) -> dict:  # fmt: skip
    """Run the simulation (resumable) and write its report; return the summary.

    Examples
    --------
    >>> summary = run_labelling("feats.h5", "bench-labelling/")  # doctest: +SKIP
    >>> summary["best"]  # labels per class -> strategy measured best  # doctest: +SKIP
    {'1': 'typical', ...}
    """
    with FeatureStore(store) as fs:
        rows = select_rows(fs, test=0.2)
        if not len(rows.test):
            raise UserInputError(f"{store}: no labelled test rows to score the loop on")
        pool = np.union1d(rows.train, rows.val)  # every labelled non-test row
        taps = loop_taps(fs, pool, tap)  # the store's default tap and those that agree with it
        X, X_test = read_joined(fs, taps, pool, pool, rows.test)[1]  # (P, D), (T, D)
        y, y_test = fs.labels(pool), fs.labels(rows.test)
        digest = fs.fingerprint.digest
    n_classes = len(np.unique(y))
    if max(spec.budgets) * n_classes > len(pool):
        raise UserInputError(
            f"--budgets up to {max(spec.budgets)} per class need {max(spec.budgets) * n_classes} "
            f"rows; the pool has {len(pool)}"
        )
    config = {"kind": "labelling", "store": digest, "tap": tap_set_name(taps), "pool": len(pool),
              "test": len(rows.test), **asdict(spec)}  # fmt: skip
    config.pop("seeds")
    runs = Path(out) / "runs"
    done = done_runs(runs, config)
    todo = [(s, seed) for seed in range(spec.seeds) for s in spec.strategies
            if f"labelling__{s}__s{seed}" not in done]  # fmt: skip
    with Progress("labelling", len(todo), unit="chains", enabled=progress) as bar:
        for strategy, seed in todo:
            start = time.perf_counter()
            cells = simulate(X, y, X_test, y_test, strategy, spec, seed=seed)
            write_record(runs, {"schema": SCHEMA, "run_id": f"labelling__{strategy}__s{seed}",
                                "status": "ok", "strategy": strategy, "seed": seed, "cells": cells,
                                "seconds": time.perf_counter() - start, "config": config,
                                "config_hash": config_hash(config)})  # fmt: skip
            bar.update(1)
    return build_labelling_report(out, n_classes=n_classes)


def simulate(X, y, X_test, y_test, strategy: str, spec: LabellingSpec, *, seed: int) -> list:
    """One selection chain: reveal labels budget by budget; score every head after each."""
    labels = np.full(len(y), -1)
    cells = []
    for budget in spec.budgets:
        want = budget * len(np.unique(y)) - int((labels >= 0).sum())
        cold = len(np.unique(labels[labels >= 0])) < 2
        how = "random" if strategy in UNCERTAINTY and cold else strategy
        picked = select(X, labels, want, strategy=how, seed=seed).rows
        labels[picked] = y[picked]
        known = labels >= 0
        for head in spec.heads:
            start = time.perf_counter()
            model = make_head(head, random_state=seed)
            if len(np.unique(labels[known])) < 2:
                accuracy = float(np.mean(y_test == labels[known][0]))  # one class: predict it
            else:  # a semi-supervised head also reads the unlabelled rows (-1)
                rows = slice(None) if head_record(head).semi else known
                accuracy = float(model.fit(X[rows], labels[rows]).score(X_test, y_test))
            cells.append({"budget": budget, "head": head, "accuracy": accuracy,
                          "fit_seconds": time.perf_counter() - start})  # fmt: skip
    return cells


def build_labelling_report(out, *, n_classes: int | None = None) -> dict:
    """Aggregate ``OUT/runs`` into labelling.{md,csv,json,png}; return the summary."""
    records = [r for r in read_records(Path(out) / "runs") if r["run_id"].startswith("labelling__")]
    if not records:
        raise UserInputError(f"{out}: no labelling runs to report")
    acc: dict[tuple, list] = {}
    for r in records:
        for c in r["cells"]:
            acc.setdefault((r["strategy"], c["head"], c["budget"]), []).append(c["accuracy"])
    table = []
    for (strategy, head, budget), values in sorted(acc.items(), key=lambda kv: kv[0][2]):
        mean, low, high = t_interval(values)
        table.append({"strategy": strategy, "head": head, "budget": budget, "mean": mean,
                      "low": low, "high": high, "seeds": len(values)})  # fmt: skip
    budgets = sorted({row["budget"] for row in table})
    best, best_pair = {}, {}
    for b in budgets:
        top = max((row for row in table if row["budget"] == b), key=lambda row: row["mean"])
        best[str(b)], best_pair[str(b)] = top["strategy"], f"{top['strategy']}+{top['head']}"
    target = next((row["mean"] for row in table if (row["strategy"], row["head"], row["budget"])
                   == (*BASELINE, budgets[-1])), None)  # fmt: skip
    needed = {}
    for strategy, head in sorted({(row["strategy"], row["head"]) for row in table}):
        hit = [row["budget"] for row in table
               if (row["strategy"], row["head"]) == (strategy, head) and target is not None
               and row["mean"] >= target]  # fmt: skip
        needed[f"{strategy}+{head}"] = min(hit) if hit else None
    summary = {"best": best, "recommended": best_pair, "baseline": "+".join(BASELINE),
               "baseline_at_max": target, "max_budget": budgets[-1],
               "labels_to_match_baseline": needed, "table": table,
               "n_classes": n_classes}  # fmt: skip
    out = Path(out)
    write_bytes_atomic(out / "labelling.json", json.dumps(summary, indent=1).encode())
    write_bytes_atomic(out / "labelling.md", labelling_markdown(summary).encode())
    lines = ["strategy,head,budget,mean,low,high,seeds"] + [
        f"{r['strategy']},{r['head']},{r['budget']},{r['mean']:.4f},{r['low']:.4f},"
        f"{r['high']:.4f},{r['seeds']}" for r in table
    ]  # fmt: skip
    write_bytes_atomic(out / "labelling.csv", ("\n".join(lines) + "\n").encode())
    plot_labelling(summary, out / "labelling.png")
    return summary


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    spread = "" if np.isnan(row["high"]) else f" ± {row['high'] - row['mean']:.3f}"
    return f"{row['mean']:.3f}{spread}"


def labelling_markdown(summary: dict) -> str:
    """Accuracy vs labels per class (mean ± 95% t-interval), labels to match, recommendations."""
    table = summary["table"]
    budgets = sorted({r["budget"] for r in table})
    pairs = sorted({(r["strategy"], r["head"]) for r in table})
    cell = {(r["strategy"], r["head"], r["budget"]): r for r in table}
    seeds = max(r["seeds"] for r in table)
    lines = [
        f"Test accuracy vs labels per class (mean ± 95% t-interval over {seeds} seeds).",
        "",
        "| strategy + head | " + " | ".join(f"{b}/class" for b in budgets)
        + f" | labels/class to match {summary['baseline']} at {summary['max_budget']}/class |",
        "|---|" + "---:|" * (len(budgets) + 1),
    ]  # fmt: skip
    for s, h in pairs:
        need = summary["labels_to_match_baseline"].get(f"{s}+{h}")
        lines.append(f"| {s} + {h} | " + " | ".join(_cell(cell.get((s, h, b))) for b in budgets)
                     + f" | {need if need is not None else f'> {budgets[-1]}'} |")  # fmt: skip
    lines += ["", "Recommended (best mean) per budget: " + ", ".join(
        f"{b}/class: {summary['recommended'][str(b)]}" for b in budgets) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_labelling(summary: dict, path) -> Path:
    """Accuracy vs labels per class, one line per (strategy, head), 95% bands."""
    table = summary["table"]
    fig, ax = figure()
    for s, h in sorted({(r["strategy"], r["head"]) for r in table}):
        rows = sorted((r for r in table if (r["strategy"], r["head"]) == (s, h)),
                      key=lambda r: r["budget"])  # fmt: skip
        x = [r["budget"] for r in rows]
        mean = np.array([r["mean"] for r in rows])
        line = ax.plot(x, mean, marker="o", ms=3, label=f"{s} + {h}",
                       ls="-" if head_record(h).semi else "--")[0]  # fmt: skip
        low, high = np.array([r["low"] for r in rows]), np.array([r["high"] for r in rows])
        if np.isfinite(low).all():
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12)
    ax.set(xscale="log", xlabel="labels per class", ylabel="test accuracy")
    budgets = sorted({r["budget"] for r in table})
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_title("labelling loop: accuracy vs labels (mean, 95% t-interval)", fontsize=10)
    return save_figure(fig, ax, path)
