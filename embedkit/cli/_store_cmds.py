"""``embedkit info`` and ``embedkit split``: look at a store, and give it a split.

embedkit info feats.h5
embedkit split feats.h5 --test 0.2 --val 0.1 --seed 0
"""

from __future__ import annotations

import json

from embedkit.cli._args import count, fraction_or_zero


def register(sub) -> None:
    p = sub.add_parser("info", help="print a store's schema, counts, taps, provenance and size")
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run_info)

    p = sub.add_parser("split", help="write a stratified train/val/test split into a store")
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--test", type=fraction_or_zero, default=0.2, help="test fraction (default 0.2)")
    p.add_argument(
        "--val", type=fraction_or_zero, default=0.0, help="validation fraction (default 0)"
    )
    p.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace a split that is already set")
    p.set_defaults(func=run_split)


def store_summary(path) -> dict:
    """Everything ``embedkit info`` prints, as a dict."""
    import numpy as np

    from embedkit.store import FeatureStore

    with FeatureStore(path) as fs:
        prov = fs.provenance
        splits = fs.splits()
        out = {
            "path": str(fs.path),
            "size_bytes": fs.nbytes,
            "items": len(fs),
            "schema_version": prov.get("schema_version"),
            "embedkit_version": prov.get("embedkit_version"),
            "created": prov.get("created"),
            "updated": prov.get("updated"),
            "backbone_sha256": prov.get("backbone_sha256"),
            "provider": prov.get("provider", ""),
            "model": prov.get("model", ""),
            "dtype": prov.get("dtype"),
            "preprocess": prov.get("preprocess"),
            "taps": [t.to_dict() for t in fs.fingerprint.tap_infos],
            "labels": {},
            "splits": {s: int((splits == s).sum()) for s in ("train", "val", "test", "")},
            "bad_items": len(fs.bad_items()),
            "runs": len(prov.get("runs", [])),
        }
        if fs.has_labels:
            y = fs.labels()
            counts = np.bincount(y[y >= 0], minlength=len(fs.label_names))
            out["labels"] = {n: int(c) for n, c in zip(fs.label_names, counts)}
            out["unlabelled"] = int((y < 0).sum())
    return out


def run_info(args) -> int:
    info = store_summary(args.store)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mb = info["size_bytes"] / 1e6
    print(f"{info['path']}: {info['items']} items, {mb:.1f} MB, schema v{info['schema_version']}")
    print(
        f"  created {info['created']}, updated {info['updated']}, "
        f"embedkit {info['embedkit_version']}"
    )
    print(f"  backbone sha256 {info['backbone_sha256']}  model {info['model'] or '-'}")
    print(
        f"  provider {info['provider'] or '-'}  storage dtype {info['dtype']}  runs {info['runs']}"
    )
    print(f"  preprocess {json.dumps(info['preprocess'])}")
    print("  taps:")
    for t in info["taps"]:
        stride = f" stride {t['stride']}" if t.get("stride") else ""
        print(f"    {t['name']:<20} shape {tuple(t['shape'])}  pooling {t['pooling']}{stride}")
    if info["labels"]:
        counts = ", ".join(f"{k}={v}" for k, v in info["labels"].items())
        print(f"  labels ({len(info['labels'])} classes): {counts}")
    else:
        print("  labels: none")
    s = info["splits"]
    print(f"  splits: train={s['train']} val={s['val']} test={s['test']} unset={s['']}")
    if info["bad_items"]:
        print(f"  bad items skipped: {info['bad_items']}")
    return 0


def run_split(args) -> int:
    import numpy as np

    from embedkit.errors import UserInputError
    from embedkit.store import FeatureStore, set_splits

    with FeatureStore(args.store) as fs:
        if (fs.splits() != "").any() and not args.force:
            raise UserInputError(f"{args.store}: already has a split; pass --force to replace it")
        n = len(fs)
        parts = fs.split(val=args.val, test=args.test, seed=args.seed, use_stored=False)
    values = np.full(n, "", dtype=object)
    for name, rows in parts.items():
        values[rows] = name
    set_splits(args.store, values.tolist())
    counts = {k: len(v) for k, v in parts.items()}
    print(f"{args.store}: split train={counts['train']} val={counts['val']} test={counts['test']}")
    return 0
