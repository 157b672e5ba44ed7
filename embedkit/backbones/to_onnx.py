"""Convert a :class:`Traceable` torch module to ONNX: TorchScript first, dynamo second.

The TorchScript exporter (opset 17) gives graphs that onnxruntime's transformer optimizer
fuses; where it fails (Gemma 3: ``unordered_map::at``), ``torch.onnx.export(dynamo=True)``
(opset 18) is tried. When both fail the error names the architecture and, for
TorchScript, the layer: the innermost module running when tracing broke, or, for an
operator the exporter cannot convert, the module that calls it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import onnx
import torch
from torch import nn

from embedkit.contract import PreprocessSpec, Tap
from embedkit.errors import ExportError, first_line

OPSET = 17  # TorchScript exporter
DYNAMO_OPSET = 18  # the dynamo exporter's lowest


@dataclass
class Traceable:
    """A module ready for ``torch.onnx.export`` and the facts written next to it."""

    module: nn.Module
    input_names: list[str]
    example: tuple  # tensors traced by the exporter
    fresh: tuple  # other batch (and sequence) sizes, real data where we have it
    dynamic_axes: dict[str, dict[int, str]]
    taps: list[Tap]  # name, output, pooling, stride, layer; the shape is added after a run
    preprocess: PreprocessSpec
    fresh_source: str  # what the fresh inputs are, for the verify report
    transformer: tuple[int, int] | None = None  # (num_heads, hidden_size) for fusion
    tokenizer_json: str | None = None
    options: dict = field(default_factory=dict)  # recorded in embedkit.export
    peaks: Callable[[], dict[str, float]] | None = None  # tap -> max |activation| up to it
    verify_set: list[tuple] = field(default_factory=list)  # batches for the drift percentiles
    verify_set_source: str = ""  # what the verification set is, for the verify report


def to_onnx(tr: Traceable, name: str) -> tuple[onnx.ModelProto, str]:
    """Export ``tr.module`` with dynamic axes, TorchScript else dynamo: ``(the graph, external
    data loaded; which exporter wrote it)``. ExportError names the architecture and each
    exporter's reason."""
    try:
        return torchscript(tr, name), f"torch.onnx TorchScript, opset {OPSET}"
    except ExportError as first:
        arch = type(getattr(tr.module, "model", tr.module)).__name__
        try:  # a graph plus its .onnx.data, loaded back
            return _torch_export(tr, dynamo=True), f"torch.onnx dynamo, opset {DYNAMO_OPSET}"
        except Exception as exc:  # the dynamo exporter raises many types
            reason = first_line(exc, 200)
            raise ExportError(
                f"{first} (architecture {arch}); the dynamo exporter failed too: {reason}"
            ) from exc


def _torch_export(tr: Traceable, *, dynamo: bool) -> onnx.ModelProto:
    """``torch.onnx.export`` into a temporary folder, its notices hidden; the graph loaded."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            if dynamo:
                warnings.simplefilter("ignore")
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            else:
                _quiet_exporter_notices()
            torch.onnx.export(
                tr.module,
                tr.example,
                path,
                input_names=tr.input_names,
                output_names=[t.output for t in tr.taps],
                dynamic_axes=tr.dynamic_axes,
                opset_version=DYNAMO_OPSET if dynamo else OPSET,
                dynamo=dynamo,
                **({"verbose": False} if dynamo else {"do_constant_folding": True}),
            )
        return onnx.load(path)  # reads model.onnx.data too


def torchscript(tr: Traceable, name: str) -> onnx.ModelProto:
    """TorchScript-export ``tr.module`` (opset 17, dynamic axes); on failure, ExportError
    ``cannot export NAME at layer 'L': <the exporter's reason>``."""
    with _module_stack(tr.module) as stack:
        try:
            return _torch_export(tr, dynamo=False)
        except Exception as exc:
            failed = [n for n in stack if n]
            layer = failed[-1] if failed else _layer_running(tr.module, tr.example, str(exc))
            layer = layer.removeprefix("model.") if layer else None
            where = f" at layer {layer!r}" if layer else ""
            raise ExportError(f"cannot export {name}{where}: {first_line(exc)}") from exc


@contextlib.contextmanager
def _module_stack(module: torch.nn.Module):
    """Yield the names of the submodules running now, innermost last (forward hooks)."""
    stack: list[str] = []

    def leave(*_) -> None:  # a forward hook returning something would replace the output
        if stack:
            stack.pop()

    handles = []
    for name, mod in module.named_modules():
        handles.append(mod.register_forward_pre_hook(lambda *_, n=name: stack.append(n)))
        handles.append(mod.register_forward_hook(leave))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def _quiet_exporter_notices() -> None:
    """Hide the exporter's notices about itself; other warnings still show.

    A TracerWarning (a tensor turned into a Python value) is hidden too: verification
    runs the graph on other batch and sequence sizes, so a trace it made wrong fails there.
    """
    ignore = warnings.filterwarnings
    ignore("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
    ignore("ignore", "The feature will be removed", DeprecationWarning)
    ignore("ignore", "Exporting aten::index operator of advanced indexing", UserWarning)
    ignore("ignore", "Constant folding - Only steps=1 can be constant folded", UserWarning)
    ignore("ignore", category=torch.jit.TracerWarning)


def _layer_running(module: torch.nn.Module, example: tuple, message: str) -> str | None:
    """Re-run forward to find the innermost module that calls the op named in ``message``."""
    op = re.search(r"'aten::(\w+)'", message)
    if op is None:
        return None
    from torch.overrides import TorchFunctionMode

    found: list[str] = []

    class FindOp(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") == op.group(1) and stack and not found:
                found.append(stack[-1])
            return func(*args, **(kwargs or {}))

    with _module_stack(module) as stack, contextlib.suppress(Exception), torch.no_grad():
        with FindOp():  # the layer is a hint only; the export error is what matters
            module(*example)
    return found[0] if found and found[0] else None
