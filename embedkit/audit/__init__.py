"""Audit a feature store: label errors, class imbalance, near-duplicates and outliers.

    embedkit audit feats.h5 --out audit/
    embedkit bench feats.h5 --exclude audit/suspects.csv --out bench-clean/

See docs/audit.md for the method and the audit → exclude → bench workflow.
"""

from embedkit.audit.balance import ClassBalance, class_balance
from embedkit.audit.label_issues import LabelIssues, find_label_issues, out_of_fold_proba
from embedkit.audit.neighbors import NeighborScan, brute_force_scan, l2_normalize, neighbor_scan
from embedkit.audit.report import AuditReport
from embedkit.audit.run import AuditSpec, audit, audit_arrays

__all__ = ["AuditReport", "AuditSpec", "ClassBalance", "LabelIssues", "NeighborScan", "audit",
           "audit_arrays", "brute_force_scan", "class_balance", "find_label_issues",
           "l2_normalize", "neighbor_scan", "out_of_fold_proba"]  # fmt: skip
