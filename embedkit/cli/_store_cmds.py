"""``embedkit info``, ``embedkit split`` and ``embedkit store``: look at, split, maintain.

embedkit info feats.h5
embedkit split feats.h5 --test 0.2 --val 0.1 --seed 0
embedkit store compact feats.h5
embedkit store pack feats.h5 feats-shared.h5
embedkit store verify feats.h5
embedkit store export feats.h5 --format parquet --out feats.parquet
embedkit store recover feats.h5      # feats.h5 gone, feats.h5.d/ intact: rebuild the index
embedkit store log feats.h5          # one line per version: time, operation, rows, labels changed
embedkit store vacuum feats.h5 --keep 3 --yes   # remove older versions and their files
"""

from __future__ import annotations

import json

from embedkit.cli._args import count, fraction_or_zero, seconds
from embedkit.cli._outputs import PACKED, Output, add_overwrite, guard_output
from embedkit.errors import StoreError, UserInputError


def register(sub) -> None:
    # fmt: off
    p = sub.add_parser("info", help="print a store's schema, counts, taps, provenance and size")
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run_info)

    p = sub.add_parser(
        "split", help="write a stratified train/val/test split into a store",
        description="Mark a store's rows train/val/test (stratified). Rows marked test stay "
        "test; unset rows are training rows already (docs/splits.md), so marking them needs "
        "no --force; only rows that already have a train/val mark need --force to move.",
    )
    p.add_argument("store", help="the .h5 feature store")
    p.add_argument("--test", type=fraction_or_zero, default=None,
                   help="test fraction of all rows, when the store has no test rows (default 0.2)")
    p.add_argument("--val", type=fraction_or_zero, default=0.0,
                   help="validation fraction of the train rows (default 0)")
    p.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true",
                   help="redraw rows already marked train/val (unset rows need no --force); its "
                   "test rows stay test")
    p.add_argument("--retest", action="store_true",
                   help="also redraw the test split (moves stored test items into train/val)")
    p.add_argument("--wait", type=seconds, default=10.0,
                   help="seconds to wait for another writer (0 to 86400)")
    p.set_defaults(func=run_split)

    p = sub.add_parser("store",
                       help="maintain a store: compact, pack, upgrade, verify, log, vacuum, export")
    ops = p.add_subparsers(dest="store_command", metavar="OP", required=True)

    def op(name, func, help_, *, wait=True, store="the .h5 feature store", **kw):
        q = ops.add_parser(name, help=help_, **kw)
        q.add_argument("store", help=store)
        if wait:
            q.add_argument("--wait", type=seconds, default=10.0,
                           help="seconds to wait for a writer")
        q.set_defaults(func=func)
        return q

    op("compact", run_store, "merge a store's shards into one (crash-safe)")
    op("upgrade", run_store, "convert an older layout (schema 1, packed, before column files)")
    q = op("pack", run_store, "write a store as one file to share (plain h5py reads it; upgrade "
           "unpacks)")
    q.add_argument("out", help="the one-file copy to write")
    add_overwrite(q)
    op("recover", run_store, "rebuild a store's missing index from the shards in its folder",
       store="the .h5 index file that is missing (its folder STORE.d remains)")
    q = op("log", run_log, "list a store's versions: time, operation, rows, changes", wait=False)
    q.add_argument("--json", action="store_true", help="print one JSON object per version")
    q = op("vacuum", run_vacuum,
           "remove old versions and the files only they name (lists them; --yes removes)",
           description="Commits never delete a file a version names; vacuum removes versions "
           "older than the newest --keep and every shard or column file no kept version names. "
           "Without --yes it only lists them.")
    q.add_argument("--keep", type=count, default=1, help="newest versions to keep (default 1)")
    q.add_argument("--yes", action="store_true", help="remove the listed files")
    q = op("verify", run_verify, "check a store in full: structure, every shard, values")
    q.add_argument("--repair", action="store_true",
                   help="restore a damaged or missing index from its versions, rewrite damaged "
                   "column files from the shards, mark damaged shards for the next extract to "
                   "recompute, drop debris")
    q = op("export", run_export, "write ids, labels, splits and features as Parquet or .npy files",
           wait=False,
           description="Stream a store's rows into a Parquet file (one fixed-size list column "
           "per tap; pandas, polars, DuckDB, Arrow) or a folder of .npy files, without h5py.")
    q.add_argument("--format", choices=("parquet", "npy"), default="parquet",
                   help="parquet: one file (default); npy: a folder of .npy files")
    q.add_argument("--tap", action="append", dest="taps", metavar="T",
                   help="export only this tap (repeatable; default all)")
    q.add_argument("--out", required=True, help="the .parquet file or npy folder to create")
    q.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    add_overwrite(q)
    # fmt: on


def run_info(args) -> int:
    from embedkit.store import store_summary

    info = store_summary(args.store)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    shown = {"MB": info["size_bytes"] / 1e6, "s": "s" if info["shards"] != 1 else "",
             "model": info["model"] or "-", "provider": info["provider"] or "-",
             "preprocess": json.dumps(info["preprocess"])}  # fmt: skip
    print("{path}: {items} items, {MB:.1f} MB, schema v{schema_version}, {shards} shard{s}\n"
          "  created {created}, updated {updated}, embedkit {embedkit_version}\n"
          "  backbone sha256 {backbone_sha256}  model {model}\n"
          "  provider {provider}  storage dtype {dtype}  runs {runs}\n"
          "  preprocess {preprocess}\n  taps:".format_map(info | shown))  # fmt: skip
    for t in info["taps"]:
        stride = f" stride {t['stride']}" if t.get("stride") else ""
        print(f"    {t['name']:<20} shape {tuple(t['shape'])}  pooling {t['pooling']}{stride}")
    if info["labels"]:
        counts = ", ".join(f"{k}={v}" for k, v in info["labels"].items())
        share = sum(info["labels"].values()) / max(1, info["items"])
        print(f"  labels ({len(info['labels'])} classes, {share:.1%} of rows labelled): {counts}")
    else:
        print("  labels: none")
    s = info["splits"]
    print(
        f"  splits: train={s['train']} val={s['val']} test={s['test']} unset={s['']}"
        + (f" (the {s['']} unset rows are training rows; docs/splits.md)" if s[""] else "")
    )
    if info["bad_items"]:
        print(f"  bad items skipped: {info['bad_items']}")
    from embedkit.store.maintain.versions import reclaimable

    count, old = reclaimable(args.store)
    if count:
        print(
            f"  versions: {count} (`embedkit store log`); {old / 1e6:.1f} MB held only by "
            "older versions" + (" (`embedkit store vacuum` frees it)" if old else "")
        )
    return 0


def run_split(args) -> int:
    import numpy as np

    from embedkit.rows import split_rows
    from embedkit.store import FeatureStore, WriterLock, set_splits

    FeatureStore(args.store).close()  # not a store: the one-line error, before any lock file
    # The lock is held from reading the rows to writing their split: no commit in between.
    with WriterLock(args.store, timeout=args.wait, what="splitting") as lock:
        with FeatureStore(args.store) as fs:
            stored = fs.splits()
            n_test = int((stored == "test").sum())
            marked = int(np.isin(stored, ["train", "val"]).sum())
            if marked and not (args.force or args.retest):
                raise UserInputError(
                    f"{args.store}: {marked} rows already marked train/val would be redrawn; "
                    f"pass --force to redraw them (its {n_test} test rows stay test), or "
                    "--retest to redraw the test rows too"
                )
            if n_test and args.test is not None and not args.retest:
                raise UserInputError(
                    f"{args.store}: has {n_test} stored test rows and --test would move them; "
                    "leave out --test to keep them, or pass --retest to redraw the test split"
                )
            test = 0.2 if args.test is None else args.test
            keep = "test" if n_test and not args.retest else False  # its test rows stay test
            parts = split_rows(fs, val=args.val, test=test, seed=args.seed, use_stored=keep)
        values = np.full(len(stored), "", dtype=object)
        for name, rows in parts.items():
            values[rows] = name
        set_splits(args.store, values.tolist(), lock=lock)
    print(f"{args.store}: {describe_split_change(stored, values)}")
    return 0


def describe_split_change(before, after) -> str:
    """What ``embedkit split`` changed: the new counts and how many rows moved where.

    Examples
    --------
    >>> describe_split_change(["", "", "test"], ["train", "val", "test"])
    'split train=1 val=1 test=1; 2 unset rows marked (train 1, val 1); 1 test rows kept'
    """
    import numpy as np

    before, after = np.asarray(before, dtype=str), np.asarray(after, dtype=str)
    counts = " ".join(f"{k}={int((after == k).sum())}" for k in ("train", "val", "test"))
    notes = []
    for name, label in (("", "unset rows marked"), ("train", "train rows"),
                        ("val", "val rows"), ("test", "test rows")):  # fmt: skip
        was = before == name
        n, moved = (
            int(was.sum()),
            {k: int((after[was] == k).sum()) for k in ("train", "val", "test")},
        )
        if n and name and moved[name] == n:
            notes.append(f"{n} {label} kept")
        elif n:
            where = ", ".join(f"{k} {v}" for k, v in moved.items() if v)
            notes.append(f"{n} {label}{' redrawn' if name else ''} ({where})")
    return f"split {counts}; " + "; ".join(notes)


def run_store(args) -> int:
    from embedkit import store

    if args.store_command == "compact":
        before = store.compact(args.store, timeout=args.wait)
        print(f"{args.store}: compacted {before} shard(s) into 1")
    elif args.store_command == "recover":
        print(store.recover(args.store, timeout=args.wait))
    elif args.store_command == "upgrade":
        done = store.upgrade(args.store, timeout=args.wait)
        what = "converted to the current layout (version 1)" if done else "already current"
        print(f"{args.store}: {what}")
    else:
        guard_output(args.out, PACKED, overwrite=args.overwrite, inputs=[args.store], option="OUT")
        out = store.pack(args.store, args.out, timeout=args.wait, overwrite=args.overwrite)
        print(
            f"{args.store}: packed into {out} ({out.stat().st_size / 1e6:.1f} MB); "
            f"plain h5py reads it; `embedkit store upgrade {out}` makes it a store again"
        )
    return 0


def run_log(args) -> int:
    from embedkit.store.maintain.versions import store_log

    entries = store_log(args.store)
    if not entries:
        print(f"{args.store}: no versions yet (written before versions); its next commit is 1")
        return 0
    if args.json:
        print(*map(json.dumps, entries), sep="\n")
        return 0
    print(f"{'version':>7}  {'committed (UTC)':25}  {'operation':9}  {'rows':>9}  "
          f"{'added':>8}  {'replaced':>8}  {'labels':>8}  {'split':>8}")  # fmt: skip
    for e in entries:
        print(f"{e['version']:>7}  {e['committed']:25}  {e['operation']:9}  {e['rows']:>9}  "
              f"{e['added']:>8}  {e['replaced']:>8}  {e['labels_changed']:>8}  "
              f"{e['split_changed']:>8}")  # fmt: skip
    return 0


def run_vacuum(args) -> int:
    from embedkit.store.maintain.versions import vacuum

    plan = vacuum(args.store, keep=args.keep, yes=args.yes, timeout=args.wait)
    if not args.yes:
        for path in plan.paths:
            print(path)
    print(plan)
    return 0


def run_verify(args) -> int:
    from embedkit.store import FeatureStore, verify_store

    if args.repair:
        from embedkit.store.maintain.repair import repair_store

        for line in repair_store(args.store, timeout=args.wait):
            print(line)
    problems = verify_store(args.store)
    if problems:
        print(*problems, sep="\n")
        more = f" ({len(problems)} problems in all, listed on stdout)" if len(problems) > 1 else ""
        raise StoreError(problems[0] + more)
    with FeatureStore(args.store) as fs:
        what = f"{len(fs)} rows, {fs.n_shards} shard(s), taps {', '.join(fs.taps)}"
    print(f"{args.store}: ok ({what}; every shard read, all feature values finite)")
    return 0


def run_export(args) -> int:
    from embedkit.store.read.export import export_store, is_export

    kind = Output(f"an export written by embedkit store export ({args.format})",
                  args.format == "npy", is_export)  # fmt: skip
    guard_output(args.out, kind, overwrite=args.overwrite, inputs=[args.store])
    summary = export_store(args.store, args.out, format=args.format, taps=args.taps,
                           progress=not args.quiet, overwrite=True)  # fmt: skip
    if not args.quiet:
        print(f"exported {summary}")
    return 0
