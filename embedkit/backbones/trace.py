"""Trace a :class:`~embedkit.backbones.loaded.Traceable` with the TorchScript exporter.

On failure the error names the layer: the innermost module running when tracing broke,
or, for an operator the exporter cannot convert, the module that calls it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
import warnings

import onnx
import torch

from embedkit.backbones.loaded import Traceable
from embedkit.errors import ExportError

OPSET = 17


def trace(tr: Traceable, name: str) -> onnx.ModelProto:
    """TorchScript-export ``tr.module`` (opset 17, dynamic axes); name the layer on failure.

    Raises
    ------
    ExportError
        ``cannot export NAME at layer 'L': <the exporter's reason>``.
    """
    stack: list[str] = []
    failed: list[str] = []
    handles = []

    def enter(_module, _args, name):
        stack.append(name)

    def leave(_module, _args, _out):
        if stack:
            stack.pop()

    for mod_name, mod in tr.module.named_modules():
        handles.append(mod.register_forward_pre_hook(functools.partial(enter, name=mod_name)))
        handles.append(mod.register_forward_hook(leave))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(None):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    tr.module,
                    tr.example,
                    path,
                    input_names=tr.input_names,
                    output_names=[d["output"] for d in tr.taps],
                    dynamic_axes=tr.dynamic_axes,
                    opset_version=OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
        except Exception as exc:
            failed = [n for n in stack if n]
            layer = failed[-1] if failed else _layer_running(tr.module, tr.example, str(exc))
            layer = layer.removeprefix("model.") if layer else None
            where = f" at layer {layer!r}" if layer else ""
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ExportError(f"cannot export {name}{where}: {reason}") from exc
        finally:
            for handle in handles:
                handle.remove()
        return onnx.load(path)


def _layer_running(module: torch.nn.Module, example: tuple, message: str) -> str | None:
    """Re-run forward to find the innermost module that calls the op named in ``message``."""
    op = re.search(r"'aten::(\w+)'", message)
    if op is None:
        return None
    from torch.overrides import TorchFunctionMode

    stack: list[str] = []
    found: list[str] = []

    class FindOp(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") == op.group(1) and stack and not found:
                found.append(stack[-1])
            return func(*args, **(kwargs or {}))

    handles = []
    for name, mod in module.named_modules():
        handles.append(mod.register_forward_pre_hook(lambda *_, n=name: stack.append(n) and None))
        handles.append(mod.register_forward_hook(lambda *_: stack.pop() and None))
    try:
        with torch.no_grad(), FindOp():
            module(*example)
    except Exception:  # the layer is a hint only; the export error is what matters
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found and found[0] else None
