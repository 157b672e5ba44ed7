"""``embedkit train``: fit a head on a store's train split (``predict``: _deploy_cmds.py).

embedkit train feats.h5 --head mlp --param hidden=256 --split-val 0.1 --out head/
"""

from __future__ import annotations

import json

from embedkit.cli._args import count, fraction


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
        type=fraction,
        default=0.1,
        help="validation fraction carved from train when the store has none (0.1)",
    )
    p.add_argument(
        "--exclude",
        metavar="IDS_FILE",
        help="item ids to leave out of training: one a line, or a CSV with an id column",
    )
    p.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="directory to save the head into")
    p.set_defaults(func=run_train)


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
    from embedkit.heads.from_store import train_on_store
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
