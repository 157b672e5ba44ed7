"""The build step: aggregate ``runs/*.json`` into a CSV, a Markdown table and plots.

    embedkit bench-build bench/          # runs alone, on the records of any bench

Each (tap set, head, shots) cell is the mean over seeds with a two-sided 95% Student-t
interval. For cross-validation, the folds of one seed are averaged first, and the
interval is over seeds (over folds when there is a single seed, which understates the
spread). Every table carries the majority-class and stratified-random baselines, and
marks a mean under the majority baseline with ▼; :mod:`embedkit.bench.choose` adds the
recommended (tap, head) pair, picked by validation accuracy.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedkit.bench import plots as P
from embedkit.bench.choose import pick_markdown, pick_summary, recommend
from embedkit.bench.data import shot_rank
from embedkit.bench.metrics import METRICS, TIMES, t_interval
from embedkit.bench.records import read_records
from embedkit.bench.table import BELOW, grid, head_rank, heads_in_order, pm, shot_levels
from embedkit.errors import UserInputError
from embedkit.files import write_bytes_atomic

# Column titles in results.md; any other metric is titled by its name, "_" as a space.
_LABELS = {"balanced_accuracy": "balanced acc.", "macro_f1": "macro-F1", "ece": "ECE"}
BASELINES = ("majority", "stratified")  # rows of every table: see runner.baselines


@dataclass(frozen=True)
class BenchTable:
    """Aggregated results: one row per (tap, head, shots) with ``<metric>_mean/_lo/_hi`` keys.

    Examples
    --------
    >>> table = build_report("bench/")  # doctest: +SKIP
    >>> table.best("all")["head"], table.recommended["tap"]  # doctest: +SKIP
    ('logreg', 'blocks.15')
    """

    rows: list[dict]
    failures: list[dict] = field(default_factory=list)  # failed runs: run_id and error
    info: dict = field(default_factory=dict)  # source, protocol, seeds, taps (in bench order),
    #   baselines (accuracy of the majority-class and stratified-random predictors)

    @property
    def taps(self) -> list[str]:
        """The tap sets, in bench order (shallow to deep for ``--taps all``)."""
        return list(self.info.get("taps") or dict.fromkeys(r["tap"] for r in self.rows))

    def best(self, shots, tap: str | None = None) -> dict | None:
        """The row with the highest mean test accuracy at ``shots`` (in ``tap`` if given)."""
        cells = [r for r in self.rows if r["shots"] == shots and r["accuracy_mean"] is not None
                 and (tap is None or r["tap"] == tap)]  # fmt: skip
        return max(cells, key=lambda r: r["accuracy_mean"], default=None)

    @property
    def recommended(self) -> dict | None:
        """The (tap, head) pair with the best validation accuracy at the largest shot level."""
        return recommend(self)

    def below_majority(self, row: dict | None) -> bool:
        """Whether ``row``'s mean accuracy is under the majority-class baseline."""
        majority = self.info.get("baselines", {}).get("majority")
        mean = row and row.get("accuracy_mean")
        return majority is not None and mean is not None and mean < majority - 1e-12

    def csv(self) -> str:
        columns = ["tap", "head", "shots", "n_runs", "n_failed", "n_train"]
        columns += [f"{m}_{s}" for m in (*METRICS, *TIMES, "val_accuracy")
                    for s in ("mean", "lo", "hi")]  # fmt: skip
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        for name, value in self.info.get("baselines", {}).items():
            writer.writerow({"tap": "", "head": name, "shots": "", "accuracy_mean": value})
        return buffer.getvalue()

    def markdown(self) -> str:
        """The pick (recommended pair, best tap per head), then accuracy per tap set."""
        lines = [pick_markdown(self)]
        for tap in self.taps:
            if len(self.taps) > 1:
                lines += [f"### Tap `{tap}`", ""]
            lines.append(self._tap_markdown(tap))
        if self.failures:
            lines += [f"{len(self.failures)} runs failed (recorded, not fatal):", ""]
            lines += [f"- `{f['run_id']}`: {f['error']}" for f in self.failures[:10]]
        return "\n".join(lines).rstrip("\n") + "\n"

    def _tap_markdown(self, tap: str) -> str:
        """Accuracy by head and shots, baselines, then every metric at the largest level."""
        rows = [r for r in self.rows if r["tap"] == tap]
        shots, heads = shot_levels(rows), heads_in_order(rows)
        cell = {(r["head"], r["shots"]): r for r in rows}
        lines = [
            f"Accuracy on {self.info.get('evaluated_on', 'the test split')}: mean ± 95% "
            f"t-interval half-width over {self.info.get('seeds', '?')} seeds (rows per class "
            f"in the header); {BELOW}: under the majority-class baseline.",
            "",
            *grid(
                [str(s) for s in shots],
                {h: [self.cell_text(cell.get((h, s))) for s in shots] for h in heads},
                self.info.get("baselines"),
            ),
        ]
        top = shots[-1] if shots else None
        keys = METRICS + TIMES
        lines += ["", f"All metrics at shots = {top}:", ""]
        lines += grid(
            [_LABELS.get(k, k.replace("_", " ")) for k in keys],
            {h: [pm(cell.get((h, top)), k) for k in keys] for h in heads},
        )
        return "\n".join(lines) + "\n"

    def cell_text(self, row: dict | None, key: str = "accuracy") -> str:
        """``mean ± half-width``, with ▼ when the mean is under the majority baseline."""
        mark = f" {BELOW}" if key == "accuracy" and self.below_majority(row) else ""
        return pm(row, key) + mark

    def summary(self) -> str:
        """A few lines for the terminal: the pick, the best head per shot level, failures."""
        out = pick_summary(self)
        pick = self.recommended
        if pick is not None and len(shot_levels(self.rows)) > 1:  # the pair's curve, no pick
            cell = {(r["tap"], r["head"], r["shots"]): r for r in self.rows}
            for shots in shot_levels(self.rows):
                row = cell.get((pick["tap"], pick["head"], shots))
                out.append(
                    f"shots={shots:>4}: {pick['head']} on {pick['tap']} "
                    f"(the recommended pair) test accuracy {self.cell_text(row)}"
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
    write_bytes_atomic(results_dir / "results.csv", table.csv().encode("utf-8"))
    write_bytes_atomic(results_dir / "results.md", table.markdown().encode("utf-8"))
    if plots:
        P.plot_accuracy_vs_shots(table, results_dir / "accuracy_vs_shots.png")
        P.plot_accuracy_vs_fit_time(table, results_dir / "accuracy_vs_fit_time.png")
        if len(table.taps) > 1:
            P.plot_accuracy_vs_depth(table, results_dir / "accuracy_vs_depth.png")
    return table


def aggregate(records: list[dict]) -> BenchTable:
    """Group records by (tap, head, shots) and reduce each metric to mean and t-interval."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["tap"], record["head"], record["shots"]), []).append(record)
    first = records[0]
    order = first["config"].get("tap_order") or list(dict.fromkeys(r["tap"] for r in records))
    rows = []
    for (tap, head, shots), members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        row = {
            "tap": tap,
            "head": head,
            "shots": shots,
            "n_runs": len(members),
            "n_failed": len(members) - len(ok),
            "n_train": int(np.median([r["n_train"] for r in members])),
        }
        for key in (*METRICS, *TIMES, "val_accuracy"):
            stats = (None if np.isnan(v) else v for v in t_interval(_per_seed(ok, key)))
            row |= dict(zip((f"{key}_mean", f"{key}_lo", f"{key}_hi"), stats))
        row["val_seeds"] = {  # seed -> validation accuracy: the paired comparisons of choose
            int(r["seed"]): float(r["val"]["accuracy"])
            for r in ok
            if (r.get("val") or {}).get("accuracy") is not None
        }
        rows.append(row)
    rank = {tap: i for i, tap in enumerate(order)}
    rows.sort(key=lambda r: (rank.get(r["tap"], len(rank)), head_rank(r["head"]),
                             shot_rank(r["shots"])))  # fmt: skip
    with_base = [r["baselines"] for r in records if r.get("baselines")]
    info = {
        "source": first["config"].get("source", {}),
        "protocol": first["protocol"],
        "seeds": len({r["seed"] for r in records}),
        "evaluated_on": "held-out folds" if first["protocol"] == "cv" else "the fixed test split",
        "n_eval": first["n_eval"],
        "host": first.get("host", {}),
        "taps": [t for t in order if any(r["tap"] == t for r in rows)],
        "val": first["config"].get("val"),
        "baselines": {k: float(np.mean([b[k] for b in with_base])) for k in BASELINES if with_base},
    }
    failed = sorted((r for r in records if r["status"] != "ok"), key=lambda r: r["run_id"])
    failures = [{"run_id": r["run_id"], "error": r["error"]} for r in failed]
    return BenchTable(rows, failures, info)


def _per_seed(records: list[dict], key: str) -> list[float]:
    """One value per seed: the run's value, or the mean over its folds (cv)."""
    by_seed: dict[int, list[float]] = {}
    for r in records:
        if key == "val_accuracy":
            value = (r.get("val") or {}).get("accuracy")
            if value is None:
                continue
        else:
            value = r.get(key) if key in TIMES else r["metrics"].get(key)
        by_seed.setdefault(r["seed"], []).append(np.nan if value is None else float(value))
    if len(by_seed) == 1 and len(records) > 1:  # one seed of cv: the interval is over folds
        return next(iter(by_seed.values()))
    return [float(np.mean(v)) for v in by_seed.values()]
