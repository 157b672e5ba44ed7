"""``embedkit predict`` and ``embedkit deploy``: apply a head to a store or to raw inputs.

embedkit predict head/ new_images/ --out preds.csv --top-k 3
embedkit predict head/ feats.h5 --out preds.csv
embedkit deploy head/ --out model.onnx
embedkit predict model.onnx new_images/ --out preds.jsonl
"""

from __future__ import annotations

import json
import sys
import warnings

from embedkit.cli import options
from embedkit.cli._args import add_input_options, top_k
from embedkit.cli._outputs import DEPLOYED, PREDICTIONS, add_overwrite, guard_output
from embedkit.errors import EmbedkitError, UserInputError, require
from embedkit.files import atomic_file


def register(sub) -> None:
    """Add the ``predict`` and ``deploy`` subcommands."""
    # fmt: off
    p = sub.add_parser(
        "predict",
        help="predict a store, or raw images/text/arrays, with a head or a deployed model",
        description="Predict every item of SOURCE. With a head directory, SOURCE is a store "
        "(checked against the store the head was trained on) or raw inputs, run through the "
        "model and preprocessing recorded at training. With a model from `embedkit deploy`, "
        "SOURCE is raw inputs.",
    )
    p.add_argument("head", help="a directory written by embedkit train, or a deployed .onnx")
    p.add_argument("source", help="a .h5 store, an image folder, .txt, .csv, .jsonl or .npy")
    p.add_argument("--out", help="preds.csv, preds.jsonl or preds.parquet (default: CSV to stdout)")
    p.add_argument("--top-k", type=top_k, metavar="K",
                   help="write the K most probable classes, not every probability")
    p.add_argument("--model", metavar="FILE.onnx",
                   help="the head's backbone, when it has moved since training")
    p.add_argument("--force", action="store_true",
                   help="predict a store made by another model or preprocessing")
    add_input_options(p, label_column="table column of true labels, written alongside",
                      labels="true labels for a .npy source")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_overwrite(p)
    p.set_defaults(func=run_predict)

    p = sub.add_parser(
        "deploy", help="compose a head and its backbone into one ONNX model",
        description="Write one ONNX graph from raw model input to class probabilities and "
        "label: the backbone the head was trained on (checked by sha256), its tap selection, "
        "and the head. Label names and preprocessing go in the metadata.",
    )
    p.add_argument("head", help="a directory written by embedkit train")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--model", metavar="FILE.onnx",
                   help="the head's backbone, when it has moved since training")
    add_overwrite(p)
    # fmt: on
    p.set_defaults(func=run_deploy)


def run_predict(args) -> int:
    """Predict and write one row per item."""
    from embedkit.deploy import predict
    from embedkit.extract import ExtractConfig

    out = args.out or ""
    if out:
        if not out.endswith((".csv", ".jsonl", ".parquet")):
            raise UserInputError(f"--out {out!r} must end in .csv, .jsonl or .parquet")
        if out.endswith(".parquet"):
            require("pyarrow", "arrow", "predict --out PREDS.parquet")  # before any work
        inputs = [args.head, args.source, args.model, args.labels, _recorded_model(args.head)]
        guard_output(out, PREDICTIONS, overwrite=args.overwrite, inputs=inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        predictions = predict(args.head, args.source, model=args.model, force=args.force,
                              progress=not args.quiet, **options(args, ExtractConfig))  # fmt: skip
    for warning in caught:
        print(f"embedkit predict: warning: {warning.message}", file=sys.stderr)
    if out.endswith(".jsonl"):
        rows, write = predictions.records(top_k=args.top_k), _write_jsonl
    else:
        rows, write = predictions.columns(top_k=args.top_k), _write_csv
    if not out:
        write(rows, sys.stdout)
        return 0
    with atomic_file(out) as tmp:
        if out.endswith(".parquet"):  # typed columns
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table(rows), str(tmp))
        else:
            with open(tmp, "w", newline="") as stream:
                write(rows, stream)
    print(f"wrote {len(predictions)} predictions to {out}")
    return 0


def run_deploy(args) -> int:
    """Compose and print a one-line summary."""
    from embedkit.deploy import deploy

    inputs = [args.head, args.model, _recorded_model(args.head)]
    guard_output(args.out, DEPLOYED, overwrite=args.overwrite, inputs=inputs)
    print(deploy(args.head, args.out, model=args.model))
    return 0


def _recorded_model(head: str) -> str | None:
    """The backbone path a head's train.json records (an input of deploy and predict)."""
    from embedkit.heads.train_record import TrainRecord

    try:
        return (TrainRecord.read(head).features or {}).get("model") or None
    except (OSError, EmbedkitError):
        return None  # not a head folder: predict/deploy name the problem themselves


def _write_jsonl(records, stream) -> None:
    stream.writelines(json.dumps(record) + "\n" for record in records)


def _write_csv(columns: dict, stream) -> None:
    """Write ``Predictions.columns()`` as CSV, probabilities to 6 significant digits."""
    import csv

    rows = list(zip(*columns.values()))
    if rows:  # no items: an empty file, no header
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                f"{v:.6g}" if k.startswith("p_") else float(v) if k == "confidence" else v
                for k, v in zip(columns, row)
            )
