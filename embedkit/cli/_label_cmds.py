"""``embedkit select`` and ``embedkit label``: choose what to label next, import the labels.

embedkit select feats.h5 --budget 100 --out picks.csv        # + picks.html, picks.tasks.json
embedkit select feats.h5 --budget 50 --strategy margin --out round2.csv
embedkit label feats.h5 picks.csv                            # the filled-in label column
embedkit label feats.h5 export.json --new-class              # a Label Studio export
"""

from __future__ import annotations

import json
from pathlib import Path

from embedkit.cli._args import count, positive_int, seconds
from embedkit.errors import UserInputError

_STRATEGIES = ("auto", "random", "typical", "coverage", "margin", "entropy", "hybrid",
               "spread-margin")  # fmt: skip


def register(sub) -> None:
    # fmt: off
    p = sub.add_parser(
        "select", help="pick the unlabelled rows to label next (typical, coverage, margin, ...)",
        description="Pick BUDGET rows to label from a store's unlabelled train rows (all rows "
        "outside test/val) and write OUT (CSV), OUT's .tasks.json (Label Studio tasks) and, "
        "for images, OUT's .html (a contact sheet).",
    )
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--budget", type=positive_int, required=True, help="rows to pick")
    p.add_argument("--out", required=True, help="the CSV to write (e.g. picks.csv)")
    p.add_argument("--strategy", choices=_STRATEGIES, default="auto",
                   help="auto (default: by budget, or by --record), random, typical (TypiClust), "
                   "coverage (ProbCover), margin, entropy, hybrid (cluster-margin), "
                   "spread-margin (half typical, half cluster-margin on label spreading)")
    p.add_argument("--tap", default=None, help="taps (a+b) to pick on (default: the loop's)")
    p.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    p.add_argument("--record", metavar="LABELLING_JSON",
                   help="auto: a `bench --labelling` summary of this store (OUT/labelling.json)")
    p.set_defaults(func=run_select)

    p = sub.add_parser(
        "label", help="import labels by id from a CSV (id,label) or a Label Studio JSON export",
        description="Write labels into a store by id without touching features; the whole file "
        "is checked first (unknown ids, contradictory duplicates, unseen classes).",
    )
    p.add_argument("store", help="the .h5 feature store (changed in place, atomically)")
    p.add_argument("labels", help="a CSV with id and label columns, or a Label Studio export")
    p.add_argument("--new-class", action="store_true", help="accept class names the store lacks")
    p.add_argument("--wait", type=seconds, default=10.0, help="seconds to wait for another writer")
    # fmt: on
    p.set_defaults(func=run_label)


def run_select(args) -> int:
    from embedkit.labelling.picks import select_store, write_csv, write_html, write_label_studio

    record = None
    if args.record:
        try:
            record = json.loads(Path(args.record).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserInputError(
                f"--record {args.record}: not a readable JSON file ({exc})"
            ) from None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserInputError(f"--out {out}: the folder {out.parent} does not exist")
    picks, how = select_store(
        args.store, args.budget, strategy=args.strategy, seed=args.seed, tap=args.tap,
        record=record,
    )  # fmt: skip
    written = [write_csv(picks, out), write_label_studio(picks, out.with_suffix(".tasks.json"))]
    if any(p.source.kind == "image" or p.source.pixels is not None for p in picks):
        written.append(write_html(picks, out.with_suffix(".html"), title=out.stem))
    note = f" ({how.note})" if how.note else ""
    print(f"picked {len(picks)} rows with {how.strategy}{note}: {', '.join(map(str, written))}")
    return 0


def run_label(args) -> int:
    from embedkit.labelling.imports import import_labels
    from embedkit.store import FeatureStore

    done = import_labels(args.store, args.labels, new_class=args.new_class, timeout=args.wait)
    with FeatureStore(args.store) as fs:
        fraction = float((fs.labels() >= 0).mean()) if len(fs) else 0.0
    fresh = f"; new classes: {', '.join(done.new_classes)}" if done.new_classes else ""
    print(
        f"{args.store}: {done.rows} labels read, {done.changed} rows changed{fresh}; "
        f"{fraction:.1%} of rows labelled"
    )
    return 0
