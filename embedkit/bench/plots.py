"""PNG plots of a bench: accuracy vs shots, vs fit time, and vs depth (one line per head).

Each plot draws the majority-class and stratified-random baselines as dashed lines where
they fall inside the y-range, which is fitted to the heads' results so that differences
between heads show; a baseline below it is noted in the legend instead. A red ▼ marks every
mean under the majority baseline (and the legend lists ▼ only when one is drawn). Legends
sit outside the axes, right of the data; a tap set with a long name (joined taps) gets a
short label (``J1``) and a key under the plot. The shots and fit-time plots show the
recommended tap set (the only one, without ``--taps``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedkit.bench.table import heads_in_order, shot_levels
from embedkit.files import atomic_file


def figure(figsize=(7, 4.5)):
    """A new ``(figure, axes)`` of ``matplotlib.pyplot`` on the Agg backend: files only."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, dpi=110)


def plot_accuracy_vs_shots(table, path: str | Path) -> Path:
    """One line per head over the shot levels, with its 95% interval as a band.
    Examples
    --------
    >>> plot_accuracy_vs_shots(build_report("bench/"), "shots.png")  # doctest: +SKIP
    """
    fig, ax = figure()
    rows = _shown_rows(table)
    levels = shot_levels(rows)
    x = np.arange(len(levels))
    for head in heads_in_order(rows):
        cells = {r["shots"]: r for r in rows if r["head"] == head}
        _line(ax, table, x, [cells.get(s) for s in levels], head)
    _baselines(ax, table)
    ax.set_xticks(x, [str(s) for s in levels])
    ax.set(xlabel="training rows per class (shots)", ylabel="accuracy")
    ax.set_title(_title(table, "accuracy vs shots (mean, 95% t-interval over seeds)"), fontsize=10)
    return save_figure(fig, ax, path)


def plot_accuracy_vs_depth(table, path: str | Path) -> Path:
    """Accuracy at the largest shot level against the tap sets (bench order: shallow to
    deep for ``--taps all``), one line per head; a star on the recommended pair.

    Examples
    --------
    >>> plot_accuracy_vs_depth(build_report("bench/"), "depth.png")  # doctest: +SKIP
    """
    top = shot_levels(table.rows)[-1]
    taps = table.taps
    x = np.arange(len(taps))
    labels, key = short_tap_labels(taps)
    fig, ax = figure((max(8, 0.9 * len(taps) + 3), 4.8 + 0.15 * len(key)))
    cell = {(r["tap"], r["head"]): r for r in table.rows if r["shots"] == top}
    for head in heads_in_order(table.rows):
        _line(ax, table, x, [cell.get((t, head)) for t in taps], head)
    best = table.recommended
    if best is not None:
        ax.plot(taps.index(best["tap"]), best["accuracy_mean"], marker="*", markersize=16,
                color="gold", markeredgecolor="black", linestyle="none",
                label=f"recommended ({best['head']})", zorder=5)  # fmt: skip
    _baselines(ax, table)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set(xlabel="tap set (shallow to deep)", ylabel="test accuracy")
    if key:
        fig.text(0.01, 0.01, "\n".join(key), fontsize=7, va="bottom", ha="left")
    ax.set_title(_title(table, f"accuracy vs depth, shots = {top}", tap=False),
                 fontsize=10)  # fmt: skip
    return save_figure(fig, ax, path)


def plot_accuracy_vs_fit_time(table, path: str | Path) -> Path:
    """Mean accuracy against mean fit seconds (log scale), one line per head over shots."""
    fig, ax = figure()
    rows = _shown_rows(table)
    for head in heads_in_order(rows):
        cells = [r for r in rows if r["head"] == head and r["accuracy_mean"] is not None]
        if not cells:
            continue
        t = np.array([max(r["fit_s_mean"], 1e-4) for r in cells])
        acc = np.array([r["accuracy_mean"] for r in cells])
        (line,) = ax.plot(t, acc, marker="o", label=head)
        ax.annotate(
            str(cells[-1]["shots"]),
            (t[-1], acc[-1]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
            color=line.get_color(),
        )
    _baselines(ax, table)
    ax.set(xscale="log", xlabel="fit seconds (mean over seeds, log scale)", ylabel="accuracy")
    ax.set_title(_title(table, "accuracy vs fit time (points: shot levels)"), fontsize=10)
    return save_figure(fig, ax, path)


def short_tap_labels(taps: list[str], limit: int = 14) -> tuple[list[str], list[str]]:
    """Axis labels for tap sets, and the key of those shortened: a name longer than
    ``limit`` (joined taps) becomes ``J1``, ``J2``, ...

    Examples
    --------
    >>> short_tap_labels(["layer.4", "last", "layer.0+layer.1+layer.2+last"])
    (['layer.4', 'last', 'J1'], ['J1 = layer.0+layer.1+layer.2+last'])
    """
    labels, key = [], []
    for tap in taps:
        if len(tap) <= limit:
            labels.append(tap)
            continue
        labels.append(f"J{len(key) + 1}")
        key.append(f"{labels[-1]} = {tap}")
    return labels, key


def _shown_rows(table) -> list[dict]:
    """The rows of the recommended tap set (else the last one): one tap set per plot."""
    tap = (table.recommended or {}).get("tap") or table.taps[-1]
    return [r for r in table.rows if r["tap"] == tap]


def _line(ax, table, x, cells, label: str) -> None:
    """Mean with its interval band; a red ▼ on each point under the majority baseline."""
    mean = np.array([_get(c, "accuracy_mean") for c in cells])
    lo = np.array([_get(c, "accuracy_lo", "accuracy_mean") for c in cells])
    hi = np.array([_get(c, "accuracy_hi", "accuracy_mean") for c in cells])
    (line,) = ax.plot(x, mean, marker="o", label=label)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    under = np.array([table.below_majority(c) for c in cells], dtype=bool)
    if under.any():
        ax.plot(np.asarray(x)[under], mean[under], marker="v", color="red", markersize=9,
                linestyle="none", zorder=4, label="_under")  # fmt: skip


def _baselines(ax, table) -> None:
    """Fit the y-range to the heads' lines; draw the baselines inside it, note the others."""
    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    values = np.concatenate([np.asarray(ln.get_ydata(), float) for ln in lines] or [[]])
    values = values[np.isfinite(values)]
    if len(values):
        low, high = float(values.min()), float(values.max())
        pad = max(0.02, 0.08 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    bottom = ax.get_ylim()[0]
    styles = {"majority": ("dimgray", "--"), "stratified": ("darkgray", ":")}
    for name, value in table.info.get("baselines", {}).items():
        color, style = styles.get(name, ("gray", "--"))
        if value >= bottom:
            ax.axhline(value, color=color, linestyle=style, linewidth=1.2,
                       label=f"{name} baseline ({value:.3f})")  # fmt: skip
        else:  # noted, not drawn: it would squash the differences between heads
            ax.plot([], [], color=color, linestyle=style,
                    label=f"{name} baseline {value:.3f} (below the axis)")  # fmt: skip
    if any(ln.get_label() == "_under" for ln in ax.get_lines()):
        ax.plot([], [], marker="v", color="red", linestyle="none", label="under majority")


def _get(row, key, fallback=None):
    value = (row or {}).get(key)
    value = (row or {}).get(fallback) if value is None and fallback else value
    return np.nan if value is None else value


def _title(table, text: str, tap: bool = True) -> str:
    name = Path(str(table.info.get("source", {}).get("store", ""))).name
    shown = _shown_rows(table)[0]["tap"] if tap and table.rows else ""
    where = f"{name} [{shown}]" if shown else name
    if len(where) > 48:  # a long joined tap set gets a line of its own
        where = f"{name}\n[{shown}]"
    return f"{where}\n{text}" if name else text


def save_figure(fig, ax, path) -> Path:
    """Grid, the legend outside the axes, then the PNG written atomically; closes ``fig``."""
    import matplotlib.pyplot as plt  # loaded by figure(), on the Agg backend

    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:  # outside the axes: never over the data
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, borderaxespad=0)
    path = Path(path)
    key_lines = sum(t.get_text().count("\n") + 1 for t in fig.texts)  # the key, if any
    fig.tight_layout(rect=(0, 0.05 * key_lines, 1, 1))
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
