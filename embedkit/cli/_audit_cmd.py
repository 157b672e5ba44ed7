"""``embedkit audit``: label issues, class balance, near-duplicates and outliers of a store.

    embedkit audit feats.h5 --out audit/
    embedkit audit feats.h5 --tap features --folds 5 --head logreg --dup-threshold 0.98 \\
        --top-k 200 --out audit/
"""

from __future__ import annotations

import argparse

from embedkit.audit.run import AuditSpec  # light: numpy and the errors only
from embedkit.cli._args import batch_size, count, folds, positive_int, similarity, top_k
from embedkit.cli._outputs import AUDIT_FOLDER, add_overwrite, guard_output

_DEFAULTS = AuditSpec()
# The AuditSpec fields the CLI offers, each as --field-name with its default: (type, help);
# the types check ranges at parse time, None takes the default's type.
# fmt: off
_OPTIONS = {
    "folds": (folds, "k of the k-fold pass"),
    "head": (None, "cheap head for out-of-fold probabilities"),
    "dup_threshold": (similarity,
                      "cosine similarity at or above which two items are near-duplicates"),
    "k": (top_k, "neighbours for the outlier score"),
    "top_k": (positive_int, "rows in suspects.csv and outliers.csv (default: all label issues; "
              "top 1%% outliers)"),
    "rank_by": (None, "score that orders the suspects, lowest first: self_confidence or margin"),
    "block_size": (batch_size, "rows per similarity tile (memory ~ 4 * block_size^2 bytes)"),
    "seed": (count, "seed of folds and head"),
}
# fmt: on


def register(subparsers) -> None:
    """Add the ``audit`` subcommand."""
    p = subparsers.add_parser(
        "audit",
        help="find label errors, imbalance, near-duplicates and outliers in a feature store",
        description="Audit a labelled feature store: out-of-fold confident learning for label "
        "issues, class balance, near-duplicate pairs (flagging train/test leakage) and k-NN "
        "outliers. Writes report.md, report.json, suspects.csv, duplicates.csv, outliers.csv "
        "and confusion.png into --out. Feed suspects.csv to `train/bench --exclude`.",
    )
    p.add_argument("store", help="the HDF5 feature store (must hold labels)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report")
    p.add_argument("--tap", default=None, help="tap to audit (default: the store's default tap)")
    for name, (kind, text) in _OPTIONS.items():
        default = getattr(_DEFAULTS, name)
        kind = kind or type(default)
        choices = ("self_confidence", "margin") if name == "rank_by" else None
        shown = "" if default is None else f" (default {default})"
        p.add_argument(
            "--" + name.replace("_", "-"), type=kind, choices=choices, default=default,
            help=text + shown,
        )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress (n of N steps, ETA)")
    add_overwrite(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from embedkit.audit import audit

    guard_output(args.out, AUDIT_FOLDER, overwrite=args.overwrite, inputs=[args.store])
    settings = {name: getattr(args, name) for name in _OPTIONS}
    report = audit(args.store, tap=args.tap, progress=not args.quiet, **settings)
    path = report.write(args.out)
    s = report.summary()
    dup = s["duplicates"]
    ratio = s["class_balance"]["imbalance_ratio"]  # None when a class has no labelled rows
    print(
        f"{s['n_items']} items: {s['label_issues']['n_issues']} label issues "
        f"(estimated noise {s['label_issues']['estimated_noise_rate']:.1%}), "
        f"{dup['n_pairs']} near-duplicate pairs ({dup['n_cross_split']} across splits), "
        f"imbalance ratio {'inf (a class is empty)' if ratio is None else f'{ratio:.2f}'}; "
        f"report: {path}"
    )
    return 0
