"""``embedkit train`` and ``embedkit predict``: fit a head on a store, and apply it.

embedkit train feats.h5 --head mlp --param hidden=256 --split-val 0.1 --out head/
embedkit predict head/ feats.h5 --out preds.csv
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    from embedkit.heads import HEADS

    p = sub.add_parser("train", help="train a head on a store's train split and save it")
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--head", required=True, choices=HEADS, help="which head")
    p.add_argument("--tap", help="feature tap to train on (default: the store's first)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a head parameter, repeatable, e.g. --param lr=0.01 --param hidden=256",
    )
    p.add_argument(
        "--split-val",
        type=float,
        default=0.1,
        help="validation fraction carved from train when the store has none (0.1)",
    )
    p.add_argument(
        "--exclude",
        metavar="IDS_FILE",
        help="item ids to leave out of training: one a line, or a CSV with an id column",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="directory to save the head into")
    p.set_defaults(func=run_train)

    p = sub.add_parser("predict", help="predict every item of a store with a saved head")
    p.add_argument("head_dir", help="a directory written by embedkit train")
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--tap", help="feature tap (default: the one the head was trained on)")
    p.add_argument("--out", help="preds.csv or preds.jsonl (default: CSV to stdout)")
    p.set_defaults(func=run_predict)


def parse_params(pairs: list[str]) -> dict:
    """``["lr=0.01", "depth=2", "schedule=cosine"]`` -> ``{"lr": 0.01, "depth": 2, ...}``."""
    from embedkit.errors import UserInputError

    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"--param {pair!r} must look like KEY=VALUE, e.g. lr=0.01")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            lowered = value.lower()
            params[key] = {"true": True, "false": False, "none": None}.get(lowered, value)
    return params


def run_train(args) -> int:
    from embedkit.heads._workflow import train_on_store
    from embedkit.store import read_ids_file

    exclude = read_ids_file(args.exclude) if args.exclude else None
    info = train_on_store(
        args.store,
        args.head,
        args.out,
        tap=args.tap,
        params=parse_params(args.param),
        split_val=args.split_val,
        exclude=exclude,
        seed=args.seed,
    )
    rows = ", ".join(f"{k} {v}" for k, v in info["rows"].items())
    print(
        f"trained {args.head} on tap {info['tap']!r} ({rows} rows; "
        f"{info['excluded']} excluded) -> {args.out}"
    )
    for part, acc in info["accuracy"].items():
        print(f"{part} accuracy: {acc:.4f}")
    return 0


def run_predict(args) -> int:
    from embedkit.errors import UserInputError
    from embedkit.heads._workflow import predict_store

    records = predict_store(args.head_dir, args.store, tap=args.tap)
    if args.out and not args.out.endswith((".csv", ".jsonl")):
        raise UserInputError(f"--out {args.out!r} must end in .csv or .jsonl")
    stream = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        if args.out and args.out.endswith(".jsonl"):
            count = _write_jsonl(records, stream)
        else:
            count = _write_csv(records, stream)
    finally:
        if stream is not sys.stdout:
            stream.close()
    if args.out:
        print(f"wrote {count} predictions to {args.out}")
    return 0


def _write_jsonl(records, stream) -> int:
    count = 0
    for record in records:
        stream.write(json.dumps(record) + "\n")
        count += 1
    return count


def _write_csv(records, stream) -> int:
    import csv

    writer, count = None, 0
    for record in records:
        count += 1
        proba = record.pop("proba")
        if writer is None:
            fields = list(record) + [f"p_{name}" for name in proba]
            writer = csv.writer(stream)
            writer.writerow(fields)
        writer.writerow(list(record.values()) + [f"{p:.6g}" for p in proba.values()])
    return count
