"""Which tap and which head: the recommended pair, the best tap per head, accuracy by tap.

    embedkit bench feats.h5 --taps all --val 0.2 --out bench/

Everything here is chosen on CROSS-VALIDATION accuracy of the training rows: at the
largest shot level, seed ``s`` of each (tap set, head) pair also fits on the training
rows minus fold ``s mod F`` of a stratified F-fold split (``F = 1/--val``, 5 by default;
:func:`embedkit.bench.data.cv_holdout`) and scores that fold, so 5 seeds are one full
5-fold cross-validation, and every pair is scored on the same folds. The test split only
reports how the chosen pair does. The rule (docs/bench.md, "How the pair is picked"):

1. the best pair has the highest mean cross-validation accuracy;
2. a pair is *within noise* of it when the mean of their paired per-fold differences is
   at most one standard error of those differences (the one-standard-error rule,
   Hastie, Tibshirani & Friedman, *Elements of Statistical Learning*, 7.10);
3. of the pairs within noise, the simplest is recommended: fewest taps in the set, then
   the cheapest head (``HeadRecord.cost``; a deterministic head before a seeded one),
   then the higher cross-validation mean.
"""

from __future__ import annotations

import math

import numpy as np

from embedkit.bench.table import BELOW, grid, heads_in_order, pm, shot_levels
from embedkit.heads.registry import HEADS, head_record

_REFERENCE_HEAD = "logreg"  # the recommendation is compared with logreg on the default tap


def recommend(table) -> dict | None:
    """The recommended (tap, head) row at the largest shot level, by the rule above; None
    without cross-validation scores.

    Examples
    --------
    >>> row = recommend(build_report("bench/"))  # doctest: +SKIP
    >>> row["tap"], row["head"], row["val_accuracy_mean"], row["accuracy_mean"]  # doctest: +SKIP
    ('layer.4', 'logreg', 0.861, 0.853)
    """
    near = within_noise(table)
    return min(near, key=_simplicity) if near else None


def within_noise(table) -> list[dict]:
    """The rows at the largest shot level within one paired standard error of the row with
    the best mean cross-validation accuracy (that row first)."""
    top = _top(table)
    cells = [r for r in table.rows if r["shots"] == top and r.get("val_accuracy_mean") is not None]
    if not cells:
        return []
    best = max(cells, key=lambda r: r["val_accuracy_mean"])
    return [best] + [r for r in cells if r is not best and _near(best, r)]


def _near(best: dict, row: dict) -> bool:
    """One-SE rule on paired differences: mean(best - row) <= sd / sqrt(n) over seeds."""
    a, b = best.get("val_seeds") or {}, row.get("val_seeds") or {}
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return False
    diff = np.array([a[s] - b[s] for s in seeds])
    return float(diff.mean()) <= float(diff.std(ddof=1)) / math.sqrt(len(seeds)) + 1e-12


def _simplicity(row: dict) -> tuple:
    """Fewest taps, then the cheapest head, a deterministic one first, then the CV mean."""
    record = head_record(row["head"]) if row["head"] in HEADS else None
    cost = (record.cost, not record.deterministic) if record else (99, True)
    return (len(row["tap"].split("+")), *cost, -row["val_accuracy_mean"])


def reference(table) -> dict | None:
    """logreg on the store's default tap at the largest shot level, if the bench ran it."""
    key = (table.info.get("source", {}).get("default_tap"), _REFERENCE_HEAD, _top(table))
    return next((r for r in table.rows if (r["tap"], r["head"], r["shots"]) == key), None)


def pick_markdown(table) -> str:
    """The recommended pair, the reference, the baselines, best tap per head, by-tap table."""
    top, best = _top(table), recommend(table)
    lines = []
    if best is None:
        lines.append(
            "No recommended pair: no cross-validation scores (`--val 0`, or under 2 rows per "
            "class at the largest shot level); run with `--val 0.2` and a larger shot level "
            "(e.g. `all`) to pick a (tap, head) pair without looking at the test split."
        )
    else:
        near, folds = within_noise(table), max(2, round(1 / (table.info.get("val") or 0.2)))
        lines.append(
            f"**Recommended: tap `{best['tap']}`, head `{best['head']}`**: cross-validation "
            f"accuracy {pm(best, 'val_accuracy')}, test accuracy {table.cell_text(best)} "
            f"(shots = {top}; picked on a repeated stratified {folds}-fold "
            f"cross-validation of the training rows ({table.info.get('seeds', '?')} seeds, one "
            f"fold each), never the test split; {len(near)} pair(s) within "
            "one paired standard error of the best cross-validation mean, and this is the "
            "simplest of them: fewest taps, then the cheapest head; ± is the 95% t-interval "
            "over seeds; the test score is of the fit on all its training rows)."
        )
        lines += ["", _gap_line(table, best)]
        ref = reference(table)
        if ref is not None and ref is not best:
            lines[-1] += (
                f" For reference, {ref['head']} on the default tap `{ref['tap']}`: "
                f"cross-validation {pm(ref, 'val_accuracy')}, test {table.cell_text(ref)}."
            )
    base = table.info.get("baselines", {})
    if base:
        lines += ["", f"Baselines on {table.info.get('evaluated_on', 'the test split')} "
                  f"(they ignore the features): majority class {base['majority']:.3f}, "
                  f"stratified random {base['stratified']:.3f}; {BELOW} marks a mean under "
                  "the majority baseline."]  # fmt: skip
    if len(table.taps) > 1:
        lines += ["", *_best_taps_markdown(table), "", *_by_tap_markdown(table, top)]
    return "\n".join(lines) + "\n"


def _best_taps_markdown(table) -> list[str]:
    """Per head, its tap set with the best cross-validation accuracy at the largest level."""
    cell = {(r["tap"], r["head"]): r for r in table.rows if r["shots"] == _top(table)}
    scored = [r for r in cell.values() if r.get("val_accuracy_mean") is not None]
    if not scored:
        return []
    default = table.info.get("source", {}).get("default_tap")
    lines = [
        "Best tap per head (by cross-validation accuracy):",
        "",
        f"| head | best tap | cross-validation | test | test on `{default}` |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for head in heads_in_order(scored):
        r = max((r for r in scored if r["head"] == head), key=lambda r: r["val_accuracy_mean"])
        on_default = table.cell_text(cell.get((default, r["head"])))
        lines.append(f"| {r['head']} | `{r['tap']}` | {pm(r, 'val_accuracy')} | "
                     f"{table.cell_text(r)} | {on_default} |")  # fmt: skip
    return lines


def _by_tap_markdown(table, top) -> list[str]:
    taps = table.taps
    cell = {(r["tap"], r["head"]): r for r in table.rows if r["shots"] == top}
    lines = [
        f"Test accuracy by tap set at shots = {top} (in bench order; for "
        "`--taps all`, shallow to deep):",
        "",
    ]
    heads = heads_in_order(table.rows)
    values = {h: [table.cell_text(cell.get((t, h))) for t in taps] for h in heads}
    return lines + grid([f"`{t}`" for t in taps], values, table.info.get("baselines"))


def pick_summary(table) -> list[str]:
    """Terminal lines: the recommended pair, the best cell, baselines, cells under majority."""
    out, best = [], recommend(table)
    if best is not None:
        out.append(
            f"recommended: tap {best['tap']} + head {best['head']}: cross-validation "
            f"{pm(best, 'val_accuracy')} ({len(within_noise(table))} pair(s) within noise; "
            f"the simplest), test {table.cell_text(best)}"
        )
        out.append(_gap_line(table, best, markdown=False))
    base = table.info.get("baselines", {})
    if base:
        out.append(
            f"baselines: majority {base['majority']:.3f}, stratified {base['stratified']:.3f}"
        )
        under = [r for r in table.rows if table.below_majority(r)]
        if under:
            out.append(f"{len(under)} (tap, head, shots) cells are under the majority baseline")
    return out


def _gap_line(table, pick: dict, *, markdown: bool = True) -> str:
    """The best cell of the sweep by TEST accuracy (a description, never the pick)."""
    cell = table.best(_top(table))
    if cell is None or pick.get("accuracy_mean") is None:
        return ""
    gap = cell["accuracy_mean"] - pick["accuracy_mean"]
    q = "`" if markdown else ""
    return (
        f"best cell of this sweep by test accuracy (shown, not picked on): tap {q}{cell['tap']}"
        f"{q} + head {q}{cell['head']}{q} {table.cell_text(cell)}; the recommended pair is "
        f"{gap:.3f} below it."
    )


def _top(table):
    return (shot_levels(table.rows) or [None])[-1]
