"""``embedkit train``: fit a head on a store's train split (``predict``: _deploy_cmds.py).

embedkit train feats.h5 --head mlp --param hidden=256 --val 0.1 --out head/
embedkit train feats.h5 --head logreg --tap blocks.14+pool --out head/   # joined taps
"""

from __future__ import annotations

import json

from embedkit.cli._args import count, fraction_or_zero
from embedkit.cli._outputs import HEAD_FOLDER, add_overwrite, guard_output
from embedkit.errors import UserInputError


def register(sub) -> None:
    from embedkit.heads import HEADS

    # fmt: off
    p = sub.add_parser("train", help="train a head on a store's train split and save it")
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--head", required=True, choices=HEADS, help="which head")
    p.add_argument("--tap", action="append",
                   help="tap to train on (default: the store's default tap); a+b, a repeated "
                   "--tap or joined (every tap) joins taps: each standardised, scaled by "
                   "1/sqrt(width), concatenated")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a head parameter, repeatable, e.g. --param lr=0.01 --param hidden=256")
    p.add_argument("--val", "--split-val", type=fraction_or_zero, default=0.1,
                   help="validation fraction of the training rows (rows marked train, and unset "
                   "rows), when the store has no val rows (default 0.1); the test rows are "
                   "never used")
    p.add_argument("--exclude", metavar="IDS_FILE",
                   help="item ids to leave out of the training rows: one a line, or a CSV with "
                   "an id column; validation and test rows keep them (see --exclude-val)")
    p.add_argument("--exclude-val", action="store_true",
                   help="also leave the --exclude ids out of the validation rows (the val "
                   "accuracy then changes with the exclude file, not only with the head)")
    p.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="directory to save the head into")
    # fmt: on
    add_overwrite(p)
    p.set_defaults(func=run_train)


def parse_params(pairs: list[str]) -> dict:
    """``["lr=0.01", "depth=2", "schedule=cosine"]`` -> ``{"lr": 0.01, "depth": 2, ...}``."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"--param {pair!r} must look like KEY=VALUE, e.g. lr=0.01")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = {"true": True, "false": False, "none": None}.get(value.lower(), value)
    return params


def run_train(args) -> int:
    from embedkit.heads.from_store import train_on_store
    from embedkit.rows import read_ids_file

    guard_output(args.out, HEAD_FOLDER, overwrite=args.overwrite, inputs=[args.store, args.exclude])
    exclude = read_ids_file(args.exclude) if args.exclude else None
    record = train_on_store(
        args.store,
        args.head,
        args.out,
        tap=args.tap,
        params=parse_params(args.param),
        val=args.val,
        exclude=exclude,
        exclude_val=args.exclude_val,
        seed=args.seed,
        progress=True,
    )
    rows = ", ".join(f"{k} {v}" for k, v in record.rows.items())
    print(
        f"trained {args.head} on tap {record.tap!r} ({rows} rows; "
        f"{record.excluded} excluded) -> {args.out}"
    )
    if record.exclude_note:
        print(record.exclude_note)
    print(describe_fit(record.fit))
    for part, acc in record.accuracy.items():
        print(f"{part} accuracy: {acc:.4f}")
    return 0


def describe_fit(fit: dict) -> str:
    """One line: epochs run, best epoch and its validation score (or iterations)."""
    if fit.get("epochs") is None:
        its = fit.get("iterations")
        return "fit: one call, no epochs" + (f" ({its} solver iterations)" if its else "")
    text = f"fit: {fit['epochs']} epochs"
    if fit.get("validation") is None:
        return text + ", no validation data (no early stopping; the last epoch is kept)"
    return (
        f"{text}, best epoch {fit['best_epoch']} on {fit['validation']} (val loss "
        f"{fit['val_loss']:.4f}, val accuracy {fit['val_accuracy']:.4f}; its weights are kept)"
    )
