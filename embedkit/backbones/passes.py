"""ONNX graph passes after tracing: transformer fusion, fp16/int8 variants, verification.

Each variant is checked against the fp32 torch model on fresh inputs (other batch
and sequence sizes than the traced example); the report goes into the ONNX
metadata ``embedkit.verify``.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import onnx

from embedkit.errors import ExportError

FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "LayerNormalization",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QAttention",
    "DynamicQuantizeLinear",
)


@dataclass(frozen=True)
class Tolerance:
    """When a variant passes verification: both bounds must hold on every tap."""

    max_abs: float  # on the largest |difference|, scaled by max(1, max|reference|)
    min_cosine: float  # per item, between ONNX and torch fp32 outputs


SET_P1_COSINE = {"fp16": 0.999, "int8": 0.99}  # text verification set, 1st percentile
TOLERANCES = {
    "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999),
    "fp16": Tolerance(max_abs=5e-2, min_cosine=0.999),
    "int8": Tolerance(max_abs=0.5, min_cosine=0.98),  # dynamic quantisation of weights
}


def count_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Count the fused / quantised operator types in a graph (for the verify report).

    Examples
    --------
    >>> import onnx
    >>> node = onnx.helper.make_node("Attention", ["x"], ["y"], domain="com.microsoft")
    >>> graph = onnx.helper.make_graph([node], "g", [], [])
    >>> count_ops(onnx.helper.make_model(graph))
    {'Attention': 1}
    """
    counts = collections.Counter(n.op_type for n in model.graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def optimize_transformer(model: onnx.ModelProto, num_heads: int, hidden_size: int):
    """Fuse attention and layer norms with onnxruntime's transformer optimizer (BERT rules).

    Returns the optimised model, or the input unchanged plus the reason when it fails.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the optimizer rewrites its input's initializers in place
    try:
        optimized = optimize_model(
            copy, model_type="bert", num_heads=num_heads, hidden_size=hidden_size
        )
    except Exception as exc:  # the optimizer raises many types; keep the plain graph
        return model, f"optimizer failed: {type(exc).__name__}: {exc}"
    return optimized.model, None


def to_fp16(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
    """Convert weights and activations to float16; ``keep_io_types`` keeps fp32 I/O."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(convert_float_to_float16(model, keep_io_types=keep_io_types))
    converted.topological_sort()  # the inserted input Casts come last otherwise (checker fails)
    return converted.model


def gelu_fed_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMuls fed by a fused GELU: the FFN output projections of a transformer encoder.

    Their input is the widest and most outlier-prone activation of a layer; its per-tensor
    dynamic int8 quantisation caused most of MiniLM's drift (verification set p1 cosine
    0.985 quantised, 0.993 kept in float32).
    """
    gelu = {n.output[0] for n in model.graph.node if n.op_type in ("BiasGelu", "FastGelu", "Gelu")}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[0] in gelu]


def to_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dynamic int8 quantisation of the weights (MatMul/Attention) for the CPU.

    The FFN output projections stay float32 (:func:`gelu_fed_matmuls`).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # it warns once per unquantised tensor
        try:
            quantize_dynamic(
                src,
                dst,
                weight_type=QuantType.QInt8,
                per_channel=True,  # MiniLM: min cosine 0.99 per channel vs 0.96 per tensor
                nodes_to_exclude=gelu_fed_matmuls(model),
                # fused com.microsoft ops defeat shape inference; their tensors are float
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.getLogger().setLevel(quiet)
        return onnx.load(dst)


def compare(ours: list[np.ndarray], ref: list[np.ndarray], names: list[str]) -> dict:
    """Max abs difference and min per-item cosine of each output vs the reference.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.ones((2, 3), np.float32)
    >>> compare([a + 0.5], [a], ["t"])["min_cosine"]
    1.0
    """
    taps, worst_abs, worst_cos, scale = {}, 0.0, 1.0, 1.0
    for name, x, y in zip(names, ours, ref, strict=True):
        cos = _cosines(x, y)
        x = np.asarray(x, np.float64).reshape(len(y), -1)
        y = np.asarray(y, np.float64).reshape(len(y), -1)
        diff = float(np.abs(x - y).max()) if x.size else 0.0
        taps[name] = {"max_abs_diff": diff, "min_cosine": float(cos.min())}
        worst_abs, worst_cos = max(worst_abs, diff), min(worst_cos, float(cos.min()))
        scale = max(scale, float(np.abs(y).max()))
    return {
        "max_abs_diff": worst_abs,
        "min_cosine": round(worst_cos, 7),
        "ref_scale": scale,
        "taps": taps,
    }


def run_ort(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a serialized model once on the CPU execution provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    feeds = {k: _cast_for(session, k, v) for k, v in feeds.items() if k in wanted}
    return session.run(None, feeds)


def verify_set(model_bytes, feeds, references, names, precision, *, force=False) -> dict:
    """Per-item cosine to torch over a verification set run in batches; gate on its p1.

    ``feeds`` and ``references`` hold one entry per batch. An item's cosine is its lowest
    over the taps. Returns ``{"ran", "texts", "min_cosine", "p1_cosine", "median_cosine",
    "tolerance", "passed"}``; raises :class:`ExportError` when the 1st percentile is under
    ``SET_P1_COSINE[precision]`` and not ``force``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    worst = []
    try:
        session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        for feed, ref in zip(feeds, references, strict=True):
            wanted = {i.name for i in session.get_inputs()}
            feed = {k: _cast_for(session, k, v) for k, v in feed.items() if k in wanted}
            outputs = session.run(None, feed)
            per_tap = [_cosines(x, y) for x, y in zip(outputs, ref, strict=True)]
            worst.append(np.min(per_tap, axis=0))  # (n,) lowest over the taps
    except Exception as exc:  # an fp16 graph the CPU EP cannot run, as in verify()
        return {"ran": False, "passed": None, "reason": _first_line(exc)}
    cos = np.concatenate(worst)
    limit = SET_P1_COSINE[precision]
    report = {
        "ran": True,
        "texts": int(len(cos)),
        "min_cosine": round(float(cos.min()), 6),
        "p1_cosine": round(float(np.percentile(cos, 1)), 6),
        "median_cosine": round(float(np.median(cos)), 7),
        "tolerance": {"p1_cosine": limit},
    }
    report["passed"] = report["p1_cosine"] >= limit
    if not report["passed"] and not force:
        raise ExportError(
            f"{precision} export drifts from torch fp32 on the {len(cos)}-text verification "
            f"set: p1 cosine {report['p1_cosine']:.5f} (limit {limit}), min "
            f"{report['min_cosine']:.5f}; use --force to keep it, or another --precision"
        )
    return report


def _cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(y), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return np.where(den > 0, (x * y).sum(1) / np.maximum(den, 1e-30), 1.0)


def _cast_for(session, name: str, value: np.ndarray) -> np.ndarray:
    kind = next(i.type for i in session.get_inputs() if i.name == name)
    return value.astype(np.float16) if kind == "tensor(float16)" else value


def verify(model_bytes, feeds, reference, names, precision, *, force=False) -> dict:
    """Check and run a serialized graph, compare with torch, fail over tolerance.

    Returns
    -------
    dict
        ``{"ran", "max_abs_diff", "min_cosine", "passed", "taps", ...}``; when the CPU
        execution provider cannot run the graph (some fp16 ops), ``ran`` is False and
        ``reason`` says why.

    Raises
    ------
    ExportError
        When the ONNX checker fails, or the difference is over tolerance and not ``force``.
    """
    model = onnx.load_from_string(model_bytes)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        msg = str(exc).splitlines()[0]
        raise ExportError(f"the exported graph fails onnx.checker: {msg}") from exc
    tol = TOLERANCES[precision]
    try:
        outputs = run_ort(model_bytes, feeds)
    except Exception as exc:  # onnxruntime raises its own types (NOT_IMPLEMENTED, Fail)
        if precision != "fp16":
            raise ExportError(
                f"onnxruntime cannot run the exported {precision} graph: {_first_line(exc)}"
            ) from exc
        return {
            "ran": False,
            "passed": None,
            "provider": "CPUExecutionProvider",
            "reason": f"CPU EP cannot run this fp16 graph: {_first_line(exc)}; "
            "run it on a GPU, or export with --keep-io-types/--precision fp32",
        }
    report = compare(outputs, reference, names)
    report.update(ran=True, provider="CPUExecutionProvider")
    scaled = tol.max_abs * max(1.0, report["ref_scale"])
    report["tolerance"] = {"max_abs_diff": scaled, "min_cosine": tol.min_cosine}
    report["passed"] = report["max_abs_diff"] <= scaled and report["min_cosine"] >= tol.min_cosine
    if not report["passed"] and not force:
        hint = " (dynamic int8 suits transformer MatMuls, not convnets)" * (precision == "int8")
        raise ExportError(
            f"{precision} export differs from torch fp32: max abs diff "
            f"{report['max_abs_diff']:.3g} (limit {scaled:.3g}), min cosine "
            f"{report['min_cosine']:.6f} (limit {tol.min_cosine}){hint}; "
            "use --force to keep it, or another --precision"
        )
    return report


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
