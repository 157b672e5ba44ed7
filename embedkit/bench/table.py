"""The bench table's cells and orders, shared by the report, the pick and the plots.

embedkit bench-build bench/      # results.md: "0.912 ± 0.004" cells, heads in registry order
"""

from __future__ import annotations

from embedkit.bench.data import shot_rank
from embedkit.bench.metrics import TIMES
from embedkit.heads.registry import HEADS

BELOW = "▼"  # marks a mean accuracy under the majority-class baseline


def pm(row: dict | None, key: str) -> str:
    """``"mean ± half-width"`` of metric ``key`` in a table row (``failed``/``n/a`` if none).

    Examples
    --------
    >>> pm({"accuracy_mean": 0.9, "accuracy_hi": 0.92, "n_failed": 0}, "accuracy")
    '0.900 ± 0.020'
    """
    if row is None or row.get(f"{key}_mean") is None:
        return "failed" if row and row["n_failed"] else "n/a"
    mean, hi = row[f"{key}_mean"], row[f"{key}_hi"]
    digits = 2 if key in TIMES else 3
    return f"{mean:.{digits}f}" + ("" if hi is None else f" ± {hi - mean:.{digits}f}")


def grid(columns: list[str], rows: dict[str, list[str]], baselines: dict | None = None) -> list:
    """Markdown lines of a table with one row per head and right-aligned ``columns``;
    each baseline is an italic row that repeats its value in every column.

    Examples
    --------
    >>> grid(["1", "all"], {"ridge": ["0.5", "0.9"]}, {"majority": 0.1})[-1]
    '| *majority* | 0.100 | 0.100 |'
    """
    lines = ["| head | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    lines += [f"| {head} | " + " | ".join(values) + " |" for head, values in rows.items()]
    for name, value in (baselines or {}).items():
        lines.append(f"| *{name}* | " + " | ".join([f"{value:.3f}"] * len(columns)) + " |")
    return lines


def head_rank(head: str) -> tuple:
    return (HEADS.index(head), "") if head in HEADS else (len(HEADS), head)


def shot_levels(rows: list[dict]) -> list:
    return sorted({r["shots"] for r in rows}, key=shot_rank)


def heads_in_order(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["head"] for r in rows))
