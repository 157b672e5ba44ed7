"""The ``embedkit`` command line.

Each subcommand parses its arguments, calls one library function and maps
:class:`~embedkit.errors.EmbedkitError` to a one-line message and a non-zero exit
code. ``--debug`` shows the traceback instead.

    embedkit export efficientnet_lite0 --out lite0.onnx
    embedkit extract lite0.onnx images/ --out feats.h5
    embedkit info feats.h5
    embedkit select feats.h5 --budget 100 --out picks.csv
    embedkit label feats.h5 picks.csv
    embedkit train feats.h5 --head mlp --out head/
    embedkit bench feats.h5 --heads sgd,logreg,mlp --shots 1,4,16,all --out bench/
    embedkit audit feats.h5 --out audit/
    embedkit predict head/ new_images/ --out preds.csv
    embedkit deploy head/ --out model.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

from embedkit import __version__
from embedkit.cli._args import OneLineParser
from embedkit.errors import EmbedkitError

# One module per group of subcommands; each defines ``register(subparsers)``.
# Heavy imports (torch, onnxruntime, h5py) happen inside the commands, so that
# ``embedkit --help`` is instant and works without the optional extras.
_COMMAND_MODULES = (
    "embedkit.cli._backbone_cmds",  # backbones, taps, export
    "embedkit.cli._extract_cmd",  # extract
    "embedkit.cli._store_cmds",  # info, split, store compact/pack/upgrade
    "embedkit.cli._head_cmds",  # train
    "embedkit.cli._label_cmds",  # select, label
    "embedkit.cli._deploy_cmds",  # predict, deploy
    "embedkit.cli._bench_cmd",  # bench
    "embedkit.cli._audit_cmd",  # audit
)


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="embedkit",
        description="Transfer learning on cached embeddings: export once, extract once, "
        "train heads in seconds.",
    )
    parser.add_argument("--version", action="version", version=f"embedkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def options(args: argparse.Namespace, spec: type) -> dict:
    """The parsed arguments named like the fields of the dataclass ``spec``."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(spec) if f.name in args}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EmbedkitError as exc:
        if args.debug:
            raise
        print(f"embedkit {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"embedkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, or an error we have not wrapped yet
        if args.debug:
            raise
        print(
            f"embedkit {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(re-run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
