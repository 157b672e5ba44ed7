"""Which tap and which head: the recommended pair, the best tap per head, accuracy by tap.

    embedkit bench feats.h5 --taps all --val 0.2 --out bench/

Everything here is chosen on VALIDATION accuracy: at the largest shot level, each run
also fits on its training rows minus a stratified ``--val`` part and scores that part
(the same rows for every tap set and head of a seed). The test split only reports how the
chosen pair does. The interval of a pair is the 95% t-interval over seeds.
"""

from __future__ import annotations

from embedkit.bench.data import shot_rank

_REFERENCE_HEAD = "logreg"  # the recommendation is compared with logreg on the default tap


def recommend(table) -> dict | None:
    """The row (tap, head) with the highest mean validation accuracy at the largest shot
    level; ties go to the earlier tap set and head. None without validation scores.

    Examples
    --------
    >>> row = recommend(build_report("bench/"))  # doctest: +SKIP
    >>> row["tap"], row["head"], row["val_accuracy_mean"], row["accuracy_mean"]  # doctest: +SKIP
    ('layer.4', 'logreg', 0.861, 0.853)
    """
    top = _top(table)
    cells = [r for r in table.rows if r["shots"] == top and r.get("val_accuracy_mean") is not None]
    return max(cells, key=lambda r: r["val_accuracy_mean"], default=None)


def best_tap_per_head(table) -> list[dict]:
    """Per head, its row at the largest shot level with the best validation accuracy."""
    top, out = _top(table), []
    for head in dict.fromkeys(r["head"] for r in table.rows):
        cells = [r for r in table.rows if r["head"] == head and r["shots"] == top
                 and r.get("val_accuracy_mean") is not None]  # fmt: skip
        if cells:
            out.append(max(cells, key=lambda r: r["val_accuracy_mean"]))
    return out


def reference(table) -> dict | None:
    """logreg on the store's default tap at the largest shot level, if the bench ran it."""
    tap = table.info.get("source", {}).get("default_tap")
    top = _top(table)
    return next(
        (r for r in table.rows
         if r["tap"] == tap and r["head"] == _REFERENCE_HEAD and r["shots"] == top), None,
    )  # fmt: skip


def pick_markdown(table) -> str:
    """The recommended pair, the reference, the baselines, best tap per head, by-tap table."""
    from embedkit.bench.report import BELOW, _shot_label

    top, best = _top(table), recommend(table)
    val = table.info.get("val")
    lines = []
    if best is None:
        lines.append(
            "No recommended pair: no validation scores (`--val 0`, or under 2 rows per class "
            "at the largest shot level); run with `--val 0.2` and a larger shot level (e.g. "
            "`all`) to pick a (tap, head) pair without looking at the test split."
        )
    else:
        lines.append(
            f"**Recommended: tap `{best['tap']}`, head `{best['head']}`**: validation accuracy "
            f"{_pm(best, 'val_accuracy')}, test accuracy {table.cell_text(best)} (shots = "
            f"{_shot_label(top)}; picked on a stratified {val:.0%} validation part of each "
            "run's training rows, never the test split; the test score is of the fit on all "
            "its training rows; ± is the 95% t-interval over seeds)."
        )
        ref = reference(table)
        if ref is not None and ref is not best:
            lines[-1] += (
                f" For reference, {ref['head']} on the default tap `{ref['tap']}`: validation "
                f"{_pm(ref, 'val_accuracy')}, test {table.cell_text(ref)}."
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
    rows = best_tap_per_head(table)
    if not rows:
        return []
    default = table.info.get("source", {}).get("default_tap")
    cell = {(r["tap"], r["head"]): r for r in table.rows if r["shots"] == _top(table)}
    lines = [
        "Best tap per head (by validation accuracy):",
        "",
        f"| head | best tap | validation | test | test on `{default}` |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        on_default = table.cell_text(cell.get((default, r["head"])))
        lines.append(f"| {r['head']} | `{r['tap']}` | {_pm(r, 'val_accuracy')} | "
                     f"{table.cell_text(r)} | {on_default} |")  # fmt: skip
    return lines


def _by_tap_markdown(table, top) -> list[str]:
    from embedkit.bench.report import _shot_label

    taps = table.taps
    cell = {(r["tap"], r["head"]): r for r in table.rows if r["shots"] == top}
    lines = [
        f"Test accuracy by tap set at shots = {_shot_label(top)} (in bench order; for "
        "`--taps all`, shallow to deep):",
        "",
        "| head | " + " | ".join(f"`{t}`" for t in taps) + " |",
        "| --- |" + " ---: |" * len(taps),
    ]
    for head in dict.fromkeys(r["head"] for r in table.rows):
        values = [table.cell_text(cell.get((t, head))) for t in taps]
        lines.append(f"| {head} | " + " | ".join(values) + " |")
    for name, value in table.info.get("baselines", {}).items():
        lines.append(f"| *{name}* | " + " | ".join([f"{value:.3f}"] * len(taps)) + " |")
    return lines


def pick_summary(table) -> list[str]:
    """Terminal lines: the recommended pair, baselines, heads under the majority baseline."""
    out, best = [], recommend(table)
    if best is not None:
        out.append(
            f"recommended: tap {best['tap']} + head {best['head']}: validation "
            f"{_pm(best, 'val_accuracy')}, test {table.cell_text(best)}"
        )
    base = table.info.get("baselines", {})
    if base:
        out.append(
            f"baselines: majority {base['majority']:.3f}, stratified {base['stratified']:.3f}"
        )
        under = [r for r in table.rows if table.below_majority(r)]
        if under:
            out.append(f"{len(under)} (tap, head, shots) cells are under the majority baseline")
    return out


def _top(table):
    levels = sorted({r["shots"] for r in table.rows}, key=shot_rank)
    return levels[-1] if levels else None


def _pm(row, key: str) -> str:
    from embedkit.bench.report import _pm

    return _pm(row, key)
