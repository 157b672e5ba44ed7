"""Write an :class:`~embedkit.audit.report.AuditReport` to a folder (see ``AuditReport.write``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError
from embedkit.files import atomic_file, write_bytes_atomic

_COLUMNS = {
    "suspects.csv": [
        "rank", "id", "given_label", "suggested_label",
        "self_confidence", "margin", "is_issue", "split",
    ],
    "duplicates.csv": [
        "id_a", "id_b", "similarity", "split_a", "split_b",
        "cross_split", "label_a", "label_b", "same_label",
    ],
    "outliers.csv": ["rank", "id", "outlier_score", "label", "split", "nearest_id"],
}  # fmt: skip


def write_report(report, out_dir: Path) -> Path:
    """Write every report file into ``out_dir`` (created if needed); return report.md."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create --out {str(out_dir)!r}: {exc.strerror}") from exc
    tables = {
        "suspects.csv": report.suspects_table(),
        "duplicates.csv": report.duplicates_table(),
        "outliers.csv": report.outliers_table(),
    }
    for name, rows in tables.items():
        with atomic_file(out_dir / name) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=_COLUMNS[name])
            writer.writeheader()
            writer.writerows(rows)
    summary = report.summary()
    summary["files"] = ["report.md", "report.json", *tables, "confusion.png"]
    write_bytes_atomic(out_dir / "report.json", (json.dumps(summary, indent=2) + "\n").encode())
    _plot_confusion(report, out_dir / "confusion.png")
    path = out_dir / "report.md"
    write_bytes_atomic(path, _markdown(report, summary, tables).encode("utf-8"))
    return path


def _plot_confusion(report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = report.balance.confusion.astype(float)  # (K, K) given x predicted
    rows = conf.sum(axis=1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    k = len(report.label_names)
    size = min(5 + 0.7 * k, 16)  # cells big enough for their counts
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of given label")
    if k <= 30:
        ax.set_xticks(range(k), report.label_names, rotation=60, ha="right")
        ax.set_yticks(range(k), report.label_names)
    if k <= 15:
        for g, p in zip(*np.nonzero(conf)):  # the count in each non-empty cell
            color = "white" if norm[g, p] > 0.5 else "black"
            ax.text(p, g, int(conf[g, p]), ha="center", va="center",
                    fontsize=11 if k <= 10 else 9, color=color)  # fmt: skip
    ax.set(xlabel="out-of-fold prediction", ylabel="given label")
    ax.set_title(f"Out-of-fold confusion ({report.spec.head}, {report.spec.folds} folds)")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _markdown(report, summary: dict, tables: dict) -> str:
    li, cb, dup = summary["label_issues"], summary["class_balance"], summary["duplicates"]
    src = summary["source"]
    where = f"`{src['store']}`, tap `{src['tap']}`" if src else "in-memory features"
    spec = report.spec
    lines = [
        "# Audit report",
        "",
        f"{summary['n_items']} items ({summary['n_labelled']} labelled) from {where}; "
        f"{spec.folds}-fold out-of-fold probabilities from `{spec.head}`.",
        "",
        "| check | finding |",
        "| --- | --- |",
        f"| label issues (confident joint) | {li['n_issues']} "
        f"(estimated noise rate {li['estimated_noise_rate']:.1%}) |",
        f"| out-of-fold accuracy | {_f(cb['oof_accuracy'], '.1%')} |",
        "| imbalance ratio (max/min count) | "
        f"{_f(cb['imbalance_ratio'], '.2f', 'inf (a class is empty)')} |",
        f"| near-duplicate pairs (cosine >= {dup['threshold']}) | {dup['n_pairs']} "
        f"({dup['n_cross_split']} across splits, "
        f"{dup['n_label_conflicts']} with different labels) |",
        f"| outlier score (mean cosine distance to {summary['outliers']['k']} nearest) | "
        f"mean {_f(summary['outliers']['score_mean'])}, 99th percentile "
        f"{_f(summary['outliers']['score_p99'])} |",
        "",
        "## Classes",
        "",
        "| class | items | out-of-fold accuracy | issues | estimated noise rate |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, count in cb["counts"].items():
        per = li["per_class"][name]
        lines.append(
            f"| {name} | {count} | {_f(cb['per_class_accuracy'][name], '.1%')} | {per['issues']} "
            f"| {per['estimated_noise_rate']:.1%} |"
        )
    if cb["empty_classes"]:
        lines += ["", f"Classes with no labelled item: {', '.join(cb['empty_classes'])}."]
    lines += ["", "Top confusions (given → predicted out of fold):", ""]
    lines += [f"- {c['given']} → {c['predicted']}: {c['count']}" for c in cb["top_confusions"]]
    lines += ["", "![confusion](confusion.png)", ""]
    lines += _top("Suspect labels", tables["suspects.csv"], 20, "suspects.csv")
    lines += _top("Near-duplicates", tables["duplicates.csv"], 20, "duplicates.csv")
    if dup["truncated"]:
        lines += [
            f"Only the {dup['n_listed']} most similar pairs are listed; raise the threshold.",
            "",
        ]
    lines += _top("Outliers", tables["outliers.csv"], 20, "outliers.csv")
    lines += [
        "## Next step",
        "",
        "Measure what cleaning buys: `embedkit bench STORE --exclude suspects.csv` "
        "against the same bench without `--exclude` (see docs/audit.md).",
        "",
    ]
    return "\n".join(lines)


def _top(title: str, rows: list[dict], n: int, file: str) -> list[str]:
    out = [
        f"## {title}",
        "",
        f"{len(rows)} rows in `{file}`" + (f"; the first {n}:" if rows else "."),
        "",
    ]
    if rows:
        keys = list(rows[0])
        out += ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        out += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows[:n]]
        out.append("")
    return out


def _f(value, spec: str = ".4f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)
