"""``embedkit extract MODEL.onnx SOURCE --out STORE``: run a graph over data into a store."""

from __future__ import annotations

import argparse

from embedkit.cli._args import add_input_options


def register(subparsers) -> None:
    """Add the ``extract`` subcommand."""
    # fmt: off
    p = subparsers.add_parser(
        "extract",
        help="run an ONNX model over images, text or arrays into a feature store",
        description="Run any ONNX model over a dataset with ONNX Runtime and cache the "
        "features in an HDF5 store. Items already in the store are skipped; an interrupted "
        "run resumes where it stopped.",
    )
    p.add_argument("model", help="the .onnx file (e.g. from `embedkit export`)")
    p.add_argument("source", help="an image folder (one subfolder per class), .txt, .csv, "
                   ".jsonl, .npy, .parquet (or a folder of parts), .arrow/.feather, or a "
                   "folder written by datasets' save_to_disk")
    p.add_argument("--out", required=True, help="the HDF5 store to create or extend")
    add_input_options(p, workers="threads preprocessing batches ahead of inference (default: "
                      "half the cores, 1 to 8); with --engine ray: actors (default: one per GPU, "
                      "else one per CPU of the cluster)",
                      skip_bad="record undecodable items in the store and go on")
    p.add_argument("--dtype", default="float32", metavar="float32|float16",
                   help="storage dtype (default float32)")
    p.add_argument("--tap", action="append", dest="taps", metavar="T",
                   help="store only this tap (repeatable; default all)")
    p.add_argument("--preprocess", metavar="FILE.json|full-frame",
                   help="preprocessing spec overriding the model's metadata; full-frame: "
                   "the model's image spec without its resize+centre crop, for items that "
                   "fill their frame (e.g. 28x28 Fashion-MNIST; docs/extract.md)")
    p.add_argument("--split", metavar="train|val|test", help="tag every item with this split")
    p.add_argument("--id-prefix", metavar="P",
                   help='prefix for item ids (default "<split>/" with --split)')
    p.add_argument("--engine", default="local", metavar="local|ray",
                   help="local: this process (default); ray: an actor pool on a Ray cluster "
                   "(pip install 'embedkit[ray]'; see docs/scale-out.md)")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="with --engine ray: the cluster to join (default: start Ray here)")
    p.add_argument("--ray-shards", default="auto", metavar="auto|driver",
                   help="with --engine ray: auto writes shards into the store's folder from "
                   "nodes that see it and sends them to the driver from the others; driver "
                   "always sends them (no shared filesystem for the store)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run)
    # fmt: on


def run(args: argparse.Namespace) -> int:
    """Extract and print a one-line summary; ExtractConfig checks the options."""
    from embedkit.cli import options
    from embedkit.extract import ExtractConfig, extract

    config = ExtractConfig(**options(args, ExtractConfig), progress=not args.quiet)
    summary = extract(args.model, args.source, args.out, config)
    if not args.quiet:
        print(summary)
    return 0
