"""ONNX graph conversions after tracing: transformer fusion, fp16 and int8 variants.

Each variant is then checked against the fp32 torch model (:mod:`.parity`).
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile

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


def to_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """int8 weights for the CPU: every MatMul with a constant weight becomes MatMulNBits.

    8-bit symmetric weights in blocks of 32 along the input axis, computed in int8
    (``accuracy_level=4``), which quantises the activations per row and block of 32 too:
    the outlier channels of the LayerNorm and GELU outputs then spoil only their own
    block. Per-tensor dynamic quantisation (``MatMulInteger``) lost too much on them:
    mpnet's verification set p1 cosine 0.974 with the FFN output projections kept in
    float32, 0.79 without; 0.998 here. A fused ``Attention`` (MiniLM) gets dynamic
    per-tensor int8 (``QAttention``), as MiniLM's drift gate passed with; a graph without
    such MatMuls (a convnet) gets dynamic int8 of its convolutions, for the gate to judge.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    weights = {i.name for i in model.graph.initializer}
    ops = {n.op_type for n in model.graph.node}
    if not any(n.op_type == "MatMul" and n.input[1] in weights for n in model.graph.node):
        return _dynamic_int8(model, None)
    if "Attention" in ops:
        model = _dynamic_int8(model, ["Attention"])
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # it logs once per node
    try:
        quantizer = MatMulNBitsQuantizer(
            model, bits=8, block_size=32, is_symmetric=True, accuracy_level=4
        )
        quantizer.process()
    finally:
        logging.getLogger().setLevel(quiet)
    return quantizer.model.model


def _dynamic_int8(model: onnx.ModelProto, op_types: list[str] | None) -> onnx.ModelProto:
    """onnxruntime's dynamic int8 (per-channel weights) of ``op_types`` (None: all it knows)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # it warns once per unquantised tensor
        try:
            quantize_dynamic(
                src, dst, weight_type=QuantType.QInt8, per_channel=True,
                op_types_to_quantize=op_types,
                # fused com.microsoft ops defeat shape inference; their tensors are float
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )  # fmt: skip
        finally:
            logging.getLogger().setLevel(quiet)
        return onnx.load(dst)
