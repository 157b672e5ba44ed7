"""The audit report: what was found, as tables, and the files it writes.

embedkit audit feats.h5 --out audit/
# audit/report.md, report.json, suspects.csv, duplicates.csv, outliers.csv, confusion.png
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedkit.audit.balance import ClassBalance
from embedkit.audit.label_issues import LabelIssues
from embedkit.audit.neighbors import NeighborScan
from embedkit.audit.report_files import write_report


@dataclass(frozen=True)
class AuditReport:
    """Everything the audit found; ``write(out_dir)`` saves it.

    Label arrays (``proba`` and ``issues``) are aligned with ``labelled``, the row
    indices of the labelled items; the rest are aligned with the store's rows.
    """

    spec: object  # the AuditSpec used
    source: dict  # {"store": path, "tap": name} when read from a store
    ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64, -1 = unlabelled
    label_names: list
    splits: np.ndarray  # (N,) str, "" = unset
    labelled: np.ndarray  # (L,) row indices
    proba: np.ndarray  # (L, K) out-of-fold probabilities
    issues: LabelIssues
    balance: ClassBalance
    scan: NeighborScan
    timings: dict

    @property
    def n_issues(self) -> int:
        """Items off the diagonal of the confident joint."""
        return int(self.issues.is_issue.sum())

    def suspect_rows(self, top_k: int | None = None) -> np.ndarray:
        """Row indices of the most suspect labels, most suspect first.

        ``top_k=None`` gives the confident-joint issues (ranked); an int gives the
        ``top_k`` lowest-scoring labelled items whether or not they are issues.
        """
        order = self.issues.ranking(self.spec.rank_by)  # (L,) into labelled
        order = order[self.issues.is_issue[order]] if top_k is None else order[:top_k]
        return self.labelled[order]

    def outlier_rows(self, top_k: int | None = None) -> np.ndarray:
        """Row indices by decreasing outlier score; ``None``: the top 1% (at least 10)."""
        n = len(self.ids)
        top_k = max(10, int(np.ceil(0.01 * n))) if top_k is None else top_k
        return np.lexsort((np.arange(n), -self.scan.outlier_score))[:top_k]

    def cross_split(self) -> np.ndarray:
        """Bool per duplicate pair: the two items play different parts (leakage), by the
        split rule of docs/splits.md (an unset row is a training row)."""
        from embedkit.rows.splits import split_roles

        roles = split_roles(self.splits)
        return roles[self.scan.pairs[:, 0]] != roles[self.scan.pairs[:, 1]]

    def _name(self, row: int) -> str:
        code = int(self.labels[row])
        return self.label_names[code] if code >= 0 else ""

    def suspects_table(self) -> list[dict]:
        """Rows of suspects.csv."""
        rows = self.suspect_rows(self.spec.top_k)
        position = np.searchsorted(self.labelled, rows)  # into the labelled rows (sorted)
        return [
            {
                "rank": rank,
                "id": self.ids[row],
                "given_label": self._name(row),
                "suggested_label": self.label_names[int(self.issues.suggested[i])],
                "self_confidence": round(float(self.issues.self_confidence[i]), 6),
                "margin": round(float(self.issues.margin[i]), 6),
                "is_issue": bool(self.issues.is_issue[i]),
                "split": self.splits[row],
            }
            for rank, (row, i) in enumerate(zip(rows, position), start=1)
        ]

    def duplicates_table(self) -> list[dict]:
        """Rows of duplicates.csv, most similar first."""
        return [
            {
                "id_a": self.ids[a],
                "id_b": self.ids[b],
                "similarity": round(float(sim), 6),
                "split_a": self.splits[a],
                "split_b": self.splits[b],
                "cross_split": bool(leak),
                "label_a": self._name(a),
                "label_b": self._name(b),
                "same_label": bool(self.labels[a] == self.labels[b]),
            }
            for (a, b), sim, leak in zip(self.scan.pairs, self.scan.similarity, self.cross_split())
        ]

    def outliers_table(self) -> list[dict]:
        """Rows of outliers.csv, most distant first."""
        knn = self.scan.knn_index
        nearest = knn[:, 0] if knn.shape[1] else np.full(len(knn), -1)
        return [
            {
                "rank": rank,
                "id": self.ids[row],
                "outlier_score": round(float(self.scan.outlier_score[row]), 6),
                "label": self._name(row),
                "split": self.splits[row],
                "nearest_id": self.ids[nearest[row]] if nearest[row] >= 0 else "",
            }
            for rank, row in enumerate(self.outlier_rows(self.spec.top_k), start=1)
        ]

    def summary(self) -> dict:
        """The JSON-ready summary that report.json holds."""
        names = self.label_names
        issues, balance, scan = self.issues, self.balance, self.scan
        given, scores, pairs = self.labels[self.labelled], scan.outlier_score, scan.pairs
        return {
            "source": self.source,
            "spec": asdict(self.spec),
            "n_items": len(self.ids),
            "n_labelled": len(self.labelled),
            "label_issues": {
                "n_issues": self.n_issues,
                "estimated_noise_rate": round(issues.noise_rate, 6),
                "per_class": {
                    names[c]: {
                        "threshold": _num(issues.thresholds[c]),
                        "estimated_noise_rate": round(float(issues.class_noise_rate[c]), 6),
                        "issues": int(issues.is_issue[given == c].sum()),
                    }
                    for c in range(len(names))
                },
                "confident_joint": issues.confident_joint.tolist(),
                "noise_joint": np.round(issues.noise_joint, 6).tolist(),
            },
            "class_balance": {
                "counts": {names[c]: int(n) for c, n in enumerate(balance.counts)},
                "imbalance_ratio": _num(balance.imbalance_ratio),
                "empty_classes": [names[c] for c in balance.empty_classes],
                "oof_accuracy": _num(float(np.mean(issues.suggested == given))),
                "per_class_accuracy": {names[c]: _num(a) for c, a in enumerate(balance.accuracy)},
                "top_confusions": [
                    {"given": names[g], "predicted": names[p], "count": n}
                    for g, p, n in balance.top_confusions(10)
                ],
                "confusion": balance.confusion.tolist(),
            },
            "duplicates": {
                "threshold": self.spec.dup_threshold,
                "n_pairs": scan.n_pairs_total,
                "n_listed": len(scan.pairs),
                "n_cross_split": int(self.cross_split().sum()),
                "n_label_conflicts": int(
                    (self.labels[pairs[:, 0]] != self.labels[pairs[:, 1]]).sum()
                ),
                "truncated": scan.truncated,
            },
            "outliers": {
                "k": int(scan.knn_index.shape[1]),
                "score_mean": _num(float(scores.mean())) if len(scores) else None,
                "score_p99": _num(float(np.quantile(scores, 0.99))) if len(scores) else None,
            },
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write report.md, report.json, suspects.csv, duplicates.csv, outliers.csv, confusion.png.

        Returns the path of report.md.

        Examples
        --------
        >>> report.write("audit/")  # doctest: +SKIP
        PosixPath('audit/report.md')
        """
        return write_report(self, Path(out_dir))


def _num(value) -> float | None:
    """A JSON-safe float: nan and inf become None."""
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None
