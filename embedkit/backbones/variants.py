"""ONNX graph conversions after tracing: transformer fusion and fp16 (int8: :mod:`.int8`).

Each variant is then checked against the fp32 torch model (:mod:`.parity`).
"""

from __future__ import annotations

import collections

import onnx
from onnx import helper

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
    """Fuse attention and GELU with onnxruntime's transformer optimizer (BERT rules); layer
    norms stay ``Add`` + ``LayerNormalization`` (:func:`unfuse_skip_layer_norm`).

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
    return fold_shared_adds(unfuse_skip_layer_norm(optimized.model)), None


def unfuse_skip_layer_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Each ``SkipLayerNormalization`` (whose mean and inverse std outputs go unused) back
    into ``Add`` (input + bias), ``Add`` (+ skip) and ``LayerNormalization``, in place.

    onnxruntime's fused CPU kernel ran 2.4x-4.7x slower than these three ops; embedkit's CPU
    sessions keep them apart (:func:`embedkit.contract.session_kwargs`), CUDA fuses them.

    Examples
    --------
    >>> from onnx import helper
    >>> node = helper.make_node("SkipLayerNormalization", ["x", "skip", "g", "b", "bias"],
    ...                         ["y"], domain="com.microsoft", epsilon=1e-5)
    >>> model = helper.make_model(helper.make_graph([node], "g", [], []))
    >>> [n.op_type for n in unfuse_skip_layer_norm(model).graph.node]
    ['Add', 'Add', 'LayerNormalization']
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset < 17:  # no LayerNormalization before opset 17
        return model
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    nodes = []
    for node in model.graph.node:
        outputs = [*node.output, "", "", ""][:4]  # y, mean, inv_std_var, input+skip+bias
        if node.op_type != "SkipLayerNormalization" or used & set(outputs[1:3]) - {""}:
            nodes.append(node)
            continue
        (x, skip, gamma, beta, bias), name = [*node.input, ""][:5], node.name or node.output[0]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        total = outputs[3] if outputs[3] in used - {""} else f"{name}/sum"
        if bias:
            nodes.append(helper.make_node("Add", [x, bias], [f"{name}/biased"], f"{name}/bias"))
            x = f"{name}/biased"
        nodes += [helper.make_node("Add", [x, skip], [total], f"{name}/skip"),
                  helper.make_node("LayerNormalization", [total, gamma, beta], outputs[:1],
                                   f"{name}/norm", axis=-1, epsilon=eps)]  # fmt: skip
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def fold_shared_adds(model: onnx.ModelProto) -> onnx.ModelProto:
    """``(x + p) + q`` where every layer adds the same ``p`` and ``q`` (mpnet's attention
    scores: its relative position bias, then the padding mask) becomes ``x + pq``, with
    ``pq = p + q`` computed once: one (batch, heads, seq, seq) ``Add`` per layer, not two.

    Examples
    --------
    >>> from onnx import helper
    >>> nodes = [helper.make_node("Add", [x, "p"], [f"{x}1"]) for x in ("a", "b")]
    >>> nodes += [helper.make_node("Add", [f"{x}1", "q"], [f"{x}2"]) for x in ("a", "b")]
    >>> inputs = [helper.make_tensor_value_info(x, 1, None) for x in "abpq"]
    >>> model = helper.make_model(helper.make_graph(nodes, "g", inputs, []))
    >>> [list(n.input) for n in fold_shared_adds(model).graph.node]
    [['p', 'q'], ['a', 'p+q'], ['b', 'p+q']]
    """
    from onnxruntime.transformers.onnx_model import OnnxModel

    made = {o: n for n in model.graph.node for o in n.output}
    uses = collections.Counter(i for n in model.graph.node for i in n.input)
    chains = [(made[n.input[0]], n) for n in model.graph.node
              if n.op_type == "Add" and n.input[0] in made and uses[n.input[0]] == 1
              and made[n.input[0]].op_type == "Add"]  # fmt: skip
    shared = collections.Counter((first.input[1], second.input[1]) for first, second in chains)
    drop = set()
    for first, second in chains:
        p, q = first.input[1], second.input[1]
        if shared[(p, q)] < 2:  # one layer's own sum: nothing to share
            continue
        if f"{p}+{q}" not in made:
            made[f"{p}+{q}"] = helper.make_node("Add", [p, q], [f"{p}+{q}"], f"{p}+{q}")
            model.graph.node.append(made[f"{p}+{q}"])
        first.input[1], first.output[0] = f"{p}+{q}", second.output[0]
        drop.add(id(second))
    kept = [n for n in model.graph.node if id(n) not in drop]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    OnnxModel(model).topological_sort()  # the shared sums were appended last
    return model


def to_fp16(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
    """Convert weights and activations to float16; ``keep_io_types`` keeps fp32 I/O."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(convert_float_to_float16(model, keep_io_types=keep_io_types))
    converted.topological_sort()  # the inserted input Casts come last otherwise (checker fails)
    return converted.model
