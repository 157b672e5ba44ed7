"""PNG plots of a bench: accuracy vs shots with interval bands, accuracy vs fit time."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_shots(table, path: str | Path) -> Path:
    """One line per head over the shot levels, with its 95% interval as a band.

    Examples
    --------
    >>> plot_accuracy_vs_shots(build_report("bench/"), "shots.png")  # doctest: +SKIP
    """
    from embedkit.bench.report import _heads, _shot_label, _shot_levels

    plt = _pyplot()
    levels = _shot_levels(table.rows)
    x = np.arange(len(levels))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for head in _heads(table.rows):
        cells = {r["shots"]: r for r in table.rows if r["head"] == head}
        mean = np.array([_get(cells.get(s), "accuracy_mean") for s in levels])
        lo = np.array([_get(cells.get(s), "accuracy_lo", "accuracy_mean") for s in levels])
        hi = np.array([_get(cells.get(s), "accuracy_hi", "accuracy_mean") for s in levels])
        (line,) = ax.plot(x, mean, marker="o", label=head)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xticks(x, [_shot_label(s) for s in levels])
    ax.set_xlabel("training rows per class (shots)")
    ax.set_ylabel("accuracy")
    ax.set_title(_title(table, "accuracy vs shots (mean, 95% t-interval over seeds)"))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, plt, path)


def plot_accuracy_vs_fit_time(table, path: str | Path) -> Path:
    """Mean accuracy against mean fit seconds (log scale), one line per head over shots."""
    from embedkit.bench.report import _heads, _shot_label, _shot_rank

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for head in _heads(table.rows):
        cells = sorted(
            (r for r in table.rows if r["head"] == head and r["accuracy_mean"] is not None),
            key=lambda r: _shot_rank(r["shots"]),
        )
        if not cells:
            continue
        t = np.array([max(r["fit_s_mean"], 1e-4) for r in cells])
        acc = np.array([r["accuracy_mean"] for r in cells])
        (line,) = ax.plot(t, acc, marker="o", label=head)
        ax.annotate(
            _shot_label(cells[-1]["shots"]),
            (t[-1], acc[-1]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
            color=line.get_color(),
        )
    ax.set_xscale("log")
    ax.set_xlabel("fit seconds (mean over seeds, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(_title(table, "accuracy vs fit time (points: shot levels)"))
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, plt, path)


def _get(row, key, fallback=None):
    if row is None:
        return np.nan
    value = row.get(key)
    if value is None and fallback:
        value = row.get(fallback)
    return np.nan if value is None else value


def _title(table, text: str) -> str:
    source = table.info.get("source", {})
    name = Path(str(source.get("store", ""))).name
    return f"{name} [{source.get('tap', '')}]: {text}" if name else text


def _save(fig, plt, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
