"""ONNX graph conversions after tracing: transformer fusion and fp16 (int8: :mod:`.int8`).

Each variant is then checked against the fp32 torch model (:mod:`.parity`).
"""

from __future__ import annotations

import collections

import onnx

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
    "MatMulNBits",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QAttention",
    "DynamicQuantizeLinear",
)


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
