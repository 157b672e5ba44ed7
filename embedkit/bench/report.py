"""The build step: aggregate ``runs/*.json`` into a CSV, a Markdown table and plots.

    embedkit bench-build bench/          # runs alone, on the records of any bench

Each (head, shots) cell is the mean over seeds with a two-sided 95% Student-t interval.
For cross-validation, the folds of one seed are averaged first, and the interval is over
seeds (over folds when there is a single seed, which understates the spread).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedkit.bench.metrics import METRICS, TIMES, t_interval
from embedkit.bench.records import read_records
from embedkit.errors import UserInputError
from embedkit.heads.registry import HEADS

_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "macro_f1": "macro-F1",
    "log_loss": "log loss",
    "ece": "ECE",
    "fit_s": "fit s",
    "predict_s": "predict s",
}


@dataclass(frozen=True)
class BenchTable:
    """Aggregated results: one row per (head, shots) with ``<metric>_mean/_lo/_hi`` keys.

    Examples
    --------
    >>> table = build_report("bench/")  # doctest: +SKIP
    >>> table.best("all")["head"]  # doctest: +SKIP
    'logreg'
    """

    rows: list[dict]
    failures: list[dict] = field(default_factory=list)  # failed runs: run_id and error
    info: dict = field(default_factory=dict)  # source, protocol, seeds, wall time

    def best(self, shots) -> dict | None:
        """The row with the highest mean accuracy at ``shots``."""
        cells = [r for r in self.rows if r["shots"] == shots and r["accuracy_mean"] is not None]
        return max(cells, key=lambda r: r["accuracy_mean"], default=None)

    def csv(self) -> str:
        columns = ["head", "shots", "n_runs", "n_failed", "n_train"]
        columns += [f"{m}_{s}" for m in METRICS + TIMES for s in ("mean", "lo", "hi")]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        return buffer.getvalue()

    def markdown(self) -> str:
        """Accuracy by head and shots, then every metric at the largest shot level."""
        shots = _shot_levels(self.rows)
        heads = _heads(self.rows)
        cell = {(r["head"], r["shots"]): r for r in self.rows}
        n_seeds = self.info.get("seeds", "?")
        lines = [
            f"Accuracy on {self.info.get('evaluated_on', 'the test split')}: mean ± 95% "
            f"t-interval half-width over {n_seeds} seeds (rows per class in the header).",
            "",
            "| head | " + " | ".join(_shot_label(s) for s in shots) + " |",
            "| --- |" + " ---: |" * len(shots),
        ]
        for head in heads:
            values = [_pm(cell.get((head, s)), "accuracy") for s in shots]
            lines.append(f"| {head} | " + " | ".join(values) + " |")
        top = shots[-1] if shots else None
        keys = METRICS + TIMES
        lines += [
            "",
            f"All metrics at shots = {_shot_label(top)}:",
            "",
            "| head | " + " | ".join(_LABELS[k] for k in keys) + " |",
            "| --- |" + " ---: |" * len(keys),
        ]
        for head in heads:
            row = cell.get((head, top))
            lines.append(f"| {head} | " + " | ".join(_pm(row, k) for k in keys) + " |")
        if self.failures:
            lines += ["", f"{len(self.failures)} runs failed (recorded, not fatal):", ""]
            for failure in self.failures[:10]:
                lines.append(f"- `{failure['run_id']}`: {failure['error']}")
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """A few lines for the terminal: the best head per shot level, failures, time."""
        out = []
        for shots in _shot_levels(self.rows):
            row = self.best(shots)
            if row:
                out.append(
                    f"shots={_shot_label(shots):>4}: best {row['head']:<9} "
                    f"accuracy {_pm(row, 'accuracy')}"
                )
        info = self.info
        if "runs_planned" in info:
            out.append(
                f"{info['runs_run']} runs run, {info['runs_skipped']} already done, "
                f"{len(self.failures)} failed; {info['wall_s']:.1f} s"
            )
        return "\n".join(out)


def build_report(results_dir: str | Path, *, plots: bool = True) -> BenchTable:
    """Aggregate ``RESULTS_DIR/runs/*.json`` into ``results.csv``, ``results.md`` and PNGs.

    Examples
    --------
    >>> table = build_report("bench/")  # doctest: +SKIP
    >>> sorted(p.name for p in Path("bench").glob("*.*"))  # doctest: +SKIP
    ['accuracy_vs_fit_time.png', 'accuracy_vs_shots.png', 'results.csv', 'results.md']
    """
    results_dir = Path(results_dir)
    records = read_records(results_dir / "runs") if (results_dir / "runs").is_dir() else []
    if not records:
        raise UserInputError(
            f"{results_dir} has no run records in runs/; run `embedkit bench STORE --out "
            f"{results_dir}` first"
        )
    table = aggregate(records)
    (results_dir / "results.csv").write_text(table.csv(), encoding="utf-8")
    (results_dir / "results.md").write_text(table.markdown(), encoding="utf-8")
    if plots:
        from embedkit.bench.plots import plot_accuracy_vs_fit_time, plot_accuracy_vs_shots

        plot_accuracy_vs_shots(table, results_dir / "accuracy_vs_shots.png")
        plot_accuracy_vs_fit_time(table, results_dir / "accuracy_vs_fit_time.png")
    return table


def aggregate(records: list[dict]) -> BenchTable:
    """Group records by (head, shots) and reduce each metric to mean and t-interval."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["head"], record["shots"]), []).append(record)
    rows = []
    for (head, shots), members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        row = {
            "head": head,
            "shots": shots,
            "n_runs": len(members),
            "n_failed": len(members) - len(ok),
            "n_train": int(np.median([r["n_train"] for r in members])),
        }
        for key in METRICS + TIMES:
            values = _per_seed(ok, key)
            mean, lo, hi = t_interval(values)
            row.update(
                {f"{key}_{s}": _none(v) for s, v in zip(("mean", "lo", "hi"), (mean, lo, hi))}
            )
        rows.append(row)
    rows.sort(key=lambda r: (_head_rank(r["head"]), _shot_rank(r["shots"])))
    first = records[0]
    info = {
        "source": first["config"].get("source", {}),
        "protocol": first["protocol"],
        "seeds": len({r["seed"] for r in records}),
        "evaluated_on": "held-out folds" if first["protocol"] == "cv" else "the fixed test split",
        "n_eval": first["n_eval"],
        "host": first.get("host", {}),
    }
    failures = [
        {"run_id": r["run_id"], "error": r["error"]}
        for r in sorted(records, key=lambda r: r["run_id"])
        if r["status"] != "ok"
    ]
    return BenchTable(rows, failures, info)


def _per_seed(records: list[dict], key: str) -> list[float]:
    """One value per seed: the run's value, or the mean over its folds (cv)."""
    by_seed: dict[int, list[float]] = {}
    for r in records:
        value = r.get(key) if key in TIMES else r["metrics"].get(key)
        by_seed.setdefault(r["seed"], []).append(np.nan if value is None else float(value))
    if len(by_seed) == 1 and len(records) > 1:  # one seed of cv: the interval is over folds
        return next(iter(by_seed.values()))
    return [float(np.mean(v)) for v in by_seed.values()]


def _none(value: float):
    return None if value is None or np.isnan(value) else float(value)


def _pm(row: dict | None, key: str) -> str:
    if row is None or row.get(f"{key}_mean") is None:
        return "failed" if row and row["n_failed"] else "n/a"
    mean, hi = row[f"{key}_mean"], row[f"{key}_hi"]
    digits = 2 if key in TIMES else 3
    text = f"{mean:.{digits}f}"
    if hi is not None:
        text += f" ± {hi - mean:.{digits}f}"
    return text


def _head_rank(head: str) -> tuple:
    return (HEADS.index(head), "") if head in HEADS else (len(HEADS), head)


def _shot_rank(shots) -> float:
    return float("inf") if shots == "all" else float(shots)


def _shot_levels(rows: list[dict]) -> list:
    return sorted({r["shots"] for r in rows}, key=_shot_rank)


def _shot_label(shots) -> str:
    return "all" if shots == "all" else str(shots)


def _heads(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["head"] for r in rows))
