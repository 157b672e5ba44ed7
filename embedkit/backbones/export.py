"""Export a backbone to ONE ONNX graph whose outputs are the chosen taps, and prove it.

    embedkit export efficientnet_lite0 --out models/lite0.onnx
    embedkit export minilm --out models/minilm.onnx --precision int8

Trace (:mod:`.to_onnx`), fuse transformer encoders, convert to fp16/int8 when asked, write
the metadata contract of docs/architecture.md, then verify against torch (:mod:`.parity`).
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import onnx
import torch

from embedkit import contract as C
from embedkit.backbones import int8, variants
from embedkit.backbones.hooked_backbone import HookedBackbone
from embedkit.backbones.parity import verify, verify_set
from embedkit.backbones.registry import get_backbone
from embedkit.backbones.to_onnx import Traceable, to_onnx
from embedkit.contract import PRECISIONS, ArraySpec, PreprocessSpec, Tap, TextSpec
from embedkit.errors import ExportError, UserInputError
from embedkit.files import save_onnx


@dataclass(frozen=True)
class ExportOptions:
    """How to export, beyond the backbone and its taps (the CLI flags of ``embedkit export``)."""

    pooling: str | None = None  # None: the backbone's default (avg for maps, mean for text)
    precision: str = "fp32"  # fp32 | fp16 | int8
    normalize: bool | None = None  # L2 after pooling; None: the backbone's default
    fold_normalize: bool = False  # images: (x - mean) / std inside the graph
    keep_io_types: bool = False  # fp16: keep float32 inputs and outputs
    optimize: bool = True  # text: fuse with onnxruntime's transformer optimizer
    force: bool = False  # keep an export that fails verification


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how well it matched torch."""

    path: str  # the ONNX file written
    backbone: str
    precision: str
    taps: tuple[Tap, ...]  # the embedkit.taps metadata (name, output, shape, pooling, ...)
    verify: dict  # the embedkit.verify metadata: max abs diff, min cosine, fusions, ...
    seconds: float  # wall time of the export, verification included
    size_bytes: int  # size of the ONNX file (and its .onnx.data)

    def summary(self) -> str:
        """A few lines for the CLI: outputs, drift vs torch, fusions, time and size."""
        v = self.verify
        sidecar = " + .onnx.data" * Path(self.path + ".data").is_file()
        lines = [
            f"wrote {self.path}{sidecar} ({self.size_bytes / 1e6:.1f} MB, {self.precision}, "
            f"{self.seconds:.1f} s, {v.get('exporter', 'TorchScript')})"
        ]
        for t in self.taps:
            lines.append(
                f"  tap {t.name:<12} -> output {t.output!r} shape {list(t.shape)} "
                f"pooling {t.pooling}"
            )
        if v.get("ran"):
            state = "passed" if v["passed"] else "FAILED (kept with --force)"
            lines.append(
                f"verify vs torch fp32 on {v['inputs']}: max abs diff "
                f"{v['max_abs_diff']:.3g}, min cosine {v['min_cosine']:.6f}: {state}"
            )
        else:
            lines.append(f"verify: not run: {v.get('reason')}")
        vs = v.get("verify_set") or {}
        if vs.get("ran"):
            lines.append(
                f"verify on {vs['texts']} texts: cosine min {vs['min_cosine']:.5f}, p1 "
                f"{vs['p1_cosine']:.5f}, median {vs['median_cosine']:.6f} (p1 limit "
                f"{vs['tolerance']['p1_cosine']})"
            )
        if v.get("int8"):
            tried = "; ".join(
                f"{t['scheme']} {t['gate_cosine']:.4f} {'passed' if t['passed'] else 'failed'}"
                for t in v["int8"]["tried"]
            )
            lines.append(f"int8 scheme: {v['int8']['scheme']} (tried, fastest first: {tried})")
        fused = ", ".join(f"{k} x{n}" for k, n in v.get("fusions", {}).items()) or "none"
        lines.append(f"fused ops: {fused}")
        if v.get("optimizer_error"):
            lines.append(f"transformer optimizer: {v['optimizer_error']}")
        return "\n".join(lines)


def export(
    module: torch.nn.Module,
    example_input: torch.Tensor,
    *,
    out: str | os.PathLike,
    taps: list[str] | None = None,
    pooling: str = "avg",
    precision: str = "fp32",
    preprocess: PreprocessSpec | dict | None = None,
    name: str = "custom",
    **options,
) -> ExportReport:
    """Export any ``torch.nn.Module`` that takes one tensor, with layer taps.

    Parameters
    ----------
    module : torch.nn.Module
        The model; it is put in eval mode.
    example_input : torch.Tensor
        An input batch used for tracing (its batch axis is exported as dynamic).
    out : str or PathLike
        The ``.onnx`` file to write.
    taps : list of str, optional
        Named modules to read (``model.named_modules()`` paths), or ``"output"`` for the
        module's own output (the default).
    pooling : str
        ``none, avg, max, avgmax, gem`` for (N, C, H, W) maps; (N, D) taps are kept as is.
    precision : str
        ``fp32``, ``fp16`` or ``int8``.
    preprocess : PreprocessSpec or dict, optional
        The ``embedkit.preprocess`` spec; default ``ArraySpec(input="x")``.
    name : str
        Backbone name recorded in metadata.
    **options
        ``normalize``, ``fold_normalize``, ``keep_io_types``, ``force``, ``optimize``.

    Returns
    -------
    ExportReport

    Examples
    --------
    >>> import tempfile, torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU())
    >>> path = tempfile.mkdtemp() + "/tiny.onnx"
    >>> report = export(net, torch.randn(2, 3, 16, 16), out=path, taps=["0", "1"])
    >>> [t.shape for t in report.taps], report.verify["passed"]
    ([(8,), (8,)], True)
    """
    backbone = HookedBackbone(name, module, example_input, preprocess or ArraySpec())
    backbone.default_pooling = pooling
    return _export(
        backbone, out, taps, ExportOptions(pooling=pooling, precision=precision, **options)
    )


def export_backbone(
    name,
    out: str | os.PathLike,
    taps: list[str] | None = None,
    *,
    pooling: str | None = None,
    precision: str = "fp32",
    max_length: int | None = None,
    normalize: bool | None = None,
    prompt: str | None = None,
    **options,
) -> ExportReport:
    """Export a registered backbone (or ``hf:``/``timm:``/``torchvision:``) by name.

    Parameters
    ----------
    name : str or loaded backbone
        A name from :func:`list_backbones`, a prefixed name, or what
        :func:`load_backbone` returned (to export one model several times).
    out : str or PathLike
        The ``.onnx`` file to write.
    taps : list of str, optional
        Tap names from ``embedkit taps NAME``; default the backbone's default tap.
    pooling : str, optional
        Image maps: ``none, avg, max, avgmax, gem``; text: ``mean, cls, lasttoken, none``.
    precision : str
        ``fp32``, ``fp16`` or ``int8``.
    max_length : int, optional
        Text: the tokenizer's truncation length recorded in the preprocessing spec.
    normalize : bool, optional
        L2-normalise pooled outputs (default: what the model folder's sentence-transformers
        config says: on for minilm and mpnet, off for a plain Hugging Face folder).
    prompt : str, optional
        Text: a prompt name from the folder's ``config_sentence_transformers.json``
        (default its ``default_prompt_name``; ``"query: "`` for E5 folders).
    **options
        ``fold_normalize``, ``keep_io_types``, ``force``, ``optimize`` (fuse text encoders).

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/lite0.onnx"
    >>> report = export_backbone("efficientnet_lite0", path)  # doctest: +SKIP
    >>> report.taps[0].shape  # doctest: +SKIP
    (1280,)
    """
    options = ExportOptions(pooling=pooling, precision=precision, normalize=normalize, **options)
    _check_out(out, options)  # before loading weights, so bad arguments fail fast
    if isinstance(name, str):
        extra = {} if prompt is None else {"prompt": prompt}
        backbone = get_backbone(name).loader(max_length=max_length, normalize=normalize, **extra)
    else:  # already loaded with load_backbone(): export it again with other taps
        backbone = name
    return _export(backbone, out, taps, options)


def load_backbone(name: str, **options):
    """Load a backbone by name: its ``tap_table()`` lists taps; pass it to export_backbone.

    Examples
    --------
    >>> bb = load_backbone("efficientnet_lite0")
    >>> [t.name for t in bb.tap_table()][-3:]
    ['features', 'pool', 'logits']
    """
    return get_backbone(name).loader(**options)


def _check_out(out, opts: ExportOptions) -> None:
    if opts.precision not in PRECISIONS:
        raise UserInputError(
            f"Unknown precision {opts.precision!r}; valid: {', '.join(PRECISIONS)}"
        )
    if Path(out).suffix != ".onnx":
        raise UserInputError(f"--out {str(out)!r} should end in .onnx")


def _export(backbone, out, taps, opts: ExportOptions) -> ExportReport:
    _check_out(out, opts)
    out = Path(out)
    start = time.perf_counter()
    tr = backbone.traceable(
        taps, pooling=opts.pooling, normalize=opts.normalize, fold_normalize=opts.fold_normalize
    )
    try:
        return _export_traced(backbone.name, tr, out, opts, start)
    finally:
        if hasattr(tr.module, "remove_hooks"):
            tr.module.remove_hooks()


def _export_traced(name: str, tr: Traceable, out: Path, opts: ExportOptions, start: float):
    with torch.no_grad():
        fresh_out = tr.module(*tr.fresh)  # also gives the per-item shapes
    reference = [t.numpy() for t in fresh_out]
    taps = []
    for tap, t in zip(tr.taps, fresh_out, strict=True):
        dynamic = tr.dynamic_axes[tap.output]  # a dynamic axis (sequence) is recorded as None
        shape = [None if ax in dynamic else n for ax, n in enumerate(t.shape)][1:]
        taps.append(replace(tap, shape=shape))
    if opts.precision == "fp16" and tr.peaks is not None:
        _check_fp16_range(name, tr.peaks())
    model, exporter = to_onnx(tr, name)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    verify_report = {"exporter": exporter, "inputs": tr.fresh_source}
    if tr.transformer is not None and opts.optimize and "dynamo" not in exporter:
        model, error = variants.optimize_transformer(model, *tr.transformer)
        if error:
            verify_report["optimizer_error"] = error  # the graph stays as exported
    precision, preprocess = opts.precision, tr.preprocess
    if precision == "fp16":
        model = variants.to_fp16(model, opts.keep_io_types)
        if not opts.keep_io_types and not isinstance(preprocess, TextSpec):
            preprocess = replace(preprocess, dtype="float16")
    meta = {
        C.FORMAT: C.FORMAT_VERSION,
        C.BACKBONE: name,
        C.PREPROCESS: preprocess.to_dict(),
        C.TAPS: [t.to_dict(dtype=False) for t in taps],
        C.PRECISION: precision,
        C.EXPORT: {
            **tr.options,
            "precision": precision,
            "keep_io_types": opts.keep_io_types,
            "torch": torch.__version__,
            "opset": opset,
        },
    }
    if tr.tokenizer_json is not None:
        meta[C.TOKENIZER] = tr.tokenizer_json
    check = _Checker(tr, reference, [t.output for t in taps], precision)
    if precision == "int8":  # the fastest scheme that passes the gate
        gate = functools.partial(check, force=True)
        model, report = int8.choose(model, gate, calibration=check.gate_feeds())
        meta[C.EXPORT]["int8_scheme"] = report["int8"]["scheme"]
        if not report["passed"] and not opts.force:
            raise ExportError(_int8_refusal(report))
    else:
        report = check(model, force=opts.force)
    C.set_metadata(model, meta)
    report["fusions"] = variants.count_ops(model)
    verify_report.update(report)
    C.set_metadata(model, {C.VERIFY: verify_report})
    size = save_onnx(model, out, external="dynamo" in exporter)
    verify_report["seconds"] = round(time.perf_counter() - start, 2)
    return ExportReport(
        str(out), name, precision, tuple(taps), verify_report, verify_report["seconds"], size
    )


FP16_MAX = 65504.0


def _check_fp16_range(name: str, peaks: dict[str, float]) -> None:
    """Refuse fp16 when a tap's activations (up to its layer) pass float16's range."""
    over = {tap: peak for tap, peak in peaks.items() if not peak < FP16_MAX}
    if over:
        worst = ", ".join(f"{tap} reaches |x| = {peak:.3g}" for tap, peak in over.items())
        raise UserInputError(
            f"cannot export {name} in fp16: {worst} on the verification texts, over "
            f"float16's {FP16_MAX:.0f}; use --precision fp32 or int8, or other --tap"
        )


class _Checker:
    """Verify a graph vs torch: fresh inputs, and the verification set for text fp16/int8.

    The torch outputs of the verification set are computed once, on the first call, and
    reused for every int8 candidate.
    """

    def __init__(self, tr: Traceable, reference, names: list[str], precision: str):
        self.tr, self.reference, self.names, self.precision = tr, reference, names, precision
        self.feeds = {n: t.numpy() for n, t in zip(tr.input_names, tr.fresh, strict=True)}
        self.set_refs = None

    def gate_feeds(self) -> list[dict]:
        """The inputs the gate judges by: the verification set's batches, else the fresh ones."""
        if not self.tr.verify_set:
            return [self.feeds]
        return [{n: t.numpy() for n, t in zip(self.tr.input_names, b)} for b in self.tr.verify_set]

    def __call__(self, model: onnx.ModelProto, force: bool) -> dict:
        data, tr = model.SerializeToString(), self.tr
        args = (self.names, self.precision)
        try:
            report = verify(data, self.feeds, self.reference, *args, force=force)
        except ExportError as exc:  # an int8 candidate onnxruntime cannot run
            if not (force and self.precision == "int8"):
                raise
            return {"ran": False, "passed": False, "min_cosine": 0.0, "reason": str(exc)}
        if tr.verify_set and self.precision != "fp32":  # text: drift over realistic texts
            if self.set_refs is None:
                with torch.no_grad():
                    self.set_refs = [[t.numpy() for t in tr.module(*b)] for b in tr.verify_set]
            found = verify_set(data, self.gate_feeds(), self.set_refs, *args, force=force)
            report["verify_set"] = {"inputs": tr.verify_set_source, **found}
            report["passed"] = report["passed"] and found["passed"] is not False
        return report


def _int8_refusal(report: dict) -> str:
    """The one-line error when no int8 scheme passes: each scheme's gate cosine."""
    vs = report.get("verify_set") or {}
    if vs.get("ran"):
        label, limit = "p1 cosine", f"{vs['tolerance']['p1_cosine']} on {vs['texts']} texts"
    else:
        label, limit = "min cosine", str(report.get("tolerance", {}).get("min_cosine"))
    tried = ", ".join(
        f"{t['scheme']} {label} {t['gate_cosine']:.5f}" for t in report["int8"]["tried"]
    )
    hint = " (dynamic int8 suits transformer MatMuls, not convnets)" * (not vs.get("ran"))
    return (
        f"int8 export drifts from torch fp32 with every scheme tried: {tried} (limit {limit})"
        f"{hint}; use --force to keep the closest ({report['int8']['scheme']}), or another "
        "--precision"
    )
