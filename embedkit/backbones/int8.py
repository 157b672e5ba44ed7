"""int8 graphs for the CPU, chosen per model: the fastest scheme that passes the drift gate.

    embedkit export minilm --precision int8     # the fastest scheme within the gate
    embedkit export mpnet --precision int8      # "dynamic+split": mpnet's outlier channels

:func:`schemes` lists the candidate graphs of one model, fastest first; the exporter
builds each in turn, verifies it against torch (fresh inputs, and the verification texts
for text encoders) and keeps the first that passes (:func:`choose`). The verify report
records the scheme chosen and the cosines of every scheme tried. The calibration inputs
(the gate's own: the verification texts where there are some) only locate outlier
channels for ``dynamic+split``.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

GELU_OPS = ("BiasGelu", "FastGelu", "Gelu")
Feeds = Sequence[dict[str, np.ndarray]]  # input name -> array, one dict per batch
SPLIT_RATIO = 5.0  # an int8 input whose calibrated peak |x| passes 5x its median channel's
OUTLIER_RATIO = 3.0  # is split, each channel peaking over 3x the median into copies within it
MAX_COPIES = 32  # copies per channel (mpnet needs 13 at most); a wilder one keeps its excess


@dataclass(frozen=True)
class Scheme:
    """One way to make an int8 graph: a name for the report and a graph-to-graph function."""

    name: str
    about: str  # one line: which ops get which int8 kernel
    build: Callable[[onnx.ModelProto], onnx.ModelProto]


def schemes(model: onnx.ModelProto, calibration: Feeds = ()) -> list[Scheme]:
    """The int8 candidates for ``model``, fastest first.

    A graph with MatMuls on constant weights (a transformer) gets three, four with
    ``calibration`` (a list of input feeds):

    - ``dynamic``: every such MatMul (and a fused ``Attention``) in dynamic int8,
      activations quantised per tensor, weights per output channel: the fastest kernel
      (``DynamicQuantizeMatMul``), but one outlier value sets the step of a whole batch;
    - ``dynamic+split``: the same, except that an input whose peak over ``calibration``
      passes ``SPLIT_RATIO`` times its median channel's has its outlier channels (over
      ``OUTLIER_RATIO`` times) split into scaled copies within that limit, their weight
      rows repeated (:func:`split_outliers`); the FFN output's outlier hidden channels
      are computed beside it in float32 (LLM.int8()'s decomposition, channels fixed at
      export); attention scores in int8 too (:func:`scores_int8`), GELU as FastGelu;
    - ``dynamic+ffn-blocks``: the same, except the FFN output projections (fed by GELU,
      whose outputs reach |x| ~ 100 in mpnet) get ``MatMulNBits``: 8-bit weights and
      activations in blocks of 32 per row, so an outlier spoils only its own block;
    - ``blocks``: ``MatMulNBits`` for every MatMul (a fused ``Attention`` keeps
      ``QAttention``), the most precise and the slowest.

    Any other graph (a convnet) gets ``dynamic`` int8 of what onnxruntime quantises.

    Examples
    --------
    >>> import onnx
    >>> from onnx import helper, numpy_helper
    >>> import numpy as np
    >>> w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    >>> node = helper.make_node("MatMul", ["x", "w"], ["y"])
    >>> x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])
    >>> y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])
    >>> model = helper.make_model(helper.make_graph([node], "g", [x], [y], [w]))
    >>> [s.name for s in schemes(model)]
    ['dynamic', 'dynamic+ffn-blocks', 'blocks']
    >>> [s.name for s in schemes(model, [{"x": np.ones((2, 4), np.float32)}])][:2]
    ['dynamic', 'dynamic+split']
    """
    if not weight_matmuls(model):
        return [Scheme("dynamic", "dynamic int8 of every op onnxruntime quantises", _dynamic_all)]
    found = [
        Scheme("dynamic", "MatMul/Attention dynamic int8, per-tensor activations", _dynamic),
        Scheme("dynamic+ffn-blocks", "dynamic int8; FFN outputs MatMulNBits", _dynamic_ffn_blocks),
        Scheme("blocks", "MatMulNBits for every MatMul (8-bit blocks of 32)", _blocks),
    ]
    if calibration:
        about = (f"dynamic int8; outlier channels (over {OUTLIER_RATIO:g}x the median peak, "
                 f"inputs over {SPLIT_RATIO:g}x) split into copies, GELU's in fp32; "
                 "Q.K^T int8; FastGelu")  # fmt: skip
        found.insert(1, Scheme("dynamic+split", about, lambda m: _dynamic_split(m, calibration)))
    return found


def choose(
    model: onnx.ModelProto, check: Callable[[onnx.ModelProto], dict], calibration: Feeds = ()
):
    """Build the candidates in turn; keep the first whose ``check`` report passed.

    ``check(graph)`` returns a verify report (``passed``, ``min_cosine``, and for text a
    ``verify_set`` with ``p1_cosine``) without raising; ``calibration`` goes to
    :func:`schemes`. Returns ``(graph, report)``: the first passing candidate, or when
    none passes the one with the highest gate cosine; ``report["int8"]`` holds the
    scheme chosen and one line per scheme tried.
    """
    tried, best = [], None
    for scheme in schemes(model, calibration):
        graph = scheme.build(model)
        report = check(graph)
        tried.append({"scheme": scheme.name, **_gate(report)})
        if best is None or _gate(report)["gate_cosine"] > _gate(best[1])["gate_cosine"]:
            best = (graph, report, scheme)
        if report.get("passed"):
            best = (graph, report, scheme)
            break
    graph, report, scheme = best
    report["int8"] = {"scheme": scheme.name, "about": scheme.about, "tried": tried}
    return graph, report


def _gate(report: dict) -> dict:
    """The cosines the gate judged: the verification set's p1 where it ran, else the min."""
    vs = report.get("verify_set") or {}
    out = {"passed": bool(report.get("passed")), "min_cosine": report.get("min_cosine")}
    if vs.get("ran"):
        out.update(p1_cosine=vs["p1_cosine"], set_min_cosine=vs["min_cosine"])
    out["gate_cosine"] = out.get("p1_cosine", out["min_cosine"]) or 0.0
    return out


def weight_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMul nodes whose second input is a constant weight (not activation x activation)."""
    weights = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def gelu_fed(model: onnx.ModelProto) -> list[str]:
    """Names of the weight MatMuls fed by a GELU: the FFN output projections."""
    gelu = {n.output[0] for n in model.graph.node if n.op_type in GELU_OPS}
    return [n.name for n in weight_matmuls(model) if n.input[0] in gelu]


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose nodes all have (unique) names, as the quantisers select by name."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for i, node in enumerate(copy.graph.node):
        node.name = node.name or f"{node.op_type}_{i}"
    return copy


def channel_peaks(model: onnx.ModelProto, feeds: Feeds) -> dict[str, np.ndarray]:
    """Per input tensor of a weight MatMul, the largest ``|x|`` of each channel (last axis)
    over ``feeds``, padding included (it shares the per-tensor int8 step at run time)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    names = list(dict.fromkeys(n.input[0] for n in weight_matmuls(model)))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    axes = {"axes": [0]} if opset < 18 else {}  # from opset 18 an input
    if opset >= 18:
        probe.graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.int64), "peak/axes"))
    for i, name in enumerate(names):  # |x| -> (rows, channels) -> (channels,)
        probe.graph.node.extend([
            helper.make_node("Abs", [name], [f"peak{i}/abs"]),
            helper.make_node("Flatten", [f"peak{i}/abs"], [f"peak{i}/rows"], axis=-1),
            helper.make_node("ReduceMax", [f"peak{i}/rows"] + ["peak/axes"] * (not axes),
                             [f"peak{i}"], keepdims=0, **axes),
        ])  # fmt: skip
        probe.graph.output.append(
            helper.make_tensor_value_info(f"peak{i}", onnx.TensorProto.FLOAT, None)
        )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    runs = [session.run(None, {k: v for k, v in feed.items() if k in wanted}) for feed in feeds]
    return {name: np.max(peaks, axis=0) for name, peaks in zip(names, zip(*runs), strict=True)}


def split_outliers(
    model: onnx.ModelProto, peaks: dict[str, np.ndarray], gelu_side: bool = True
) -> onnx.ModelProto:
    """Keep each weight MatMul's outlier input channels off its per-tensor int8 step.

    An input ``x`` whose peak channel passes ``SPLIT_RATIO`` times the median channel's peak
    is split (outlier channel splitting): each channel ``j`` whose peak passes the limit
    ``OUTLIER_RATIO`` times the median becomes ``k_j = ceil(peak_j / limit)`` channels of
    ``x_j / k_j``, so ``y = x @ W`` becomes ``concat(x * s, gather(x * s, R)) @ concat(W,
    W[R])`` with ``s_j = 1 / k_j`` and ``R`` repeating ``j`` ``k_j - 1`` times: the same in
    float, and every int8 input channel within the limit. MatMuls that read one tensor
    (attention's Q, K and V) share the split tensor, so onnxruntime quantises it once. With
    ``gelu_side``, an FFN output fed by ``BiasGelu`` keeps its outliers in float32 instead
    (:func:`_gelu_sides`: the hidden tensor is 4x wider, and scaling does not pass GELU).
    """
    model = _named(model)
    weights = {i.name: i for i in model.graph.initializer}
    uses = collections.Counter(i for n in model.graph.node for i in n.input)
    nodes, shared = [], {}  # x -> (split x, its repeated channels R): one per input tensor
    ffn = _gelu_sides(model, peaks, weights, uses) if gelu_side else {}
    for node in model.graph.node:
        if node.name in ffn:
            nodes += ffn[node.name]
            continue
        peak = peaks.get(node.input[0]) if node.input[1:2] and node.input[1] in weights else None
        if node.op_type != "MatMul" or peak is None or uses[node.input[1]] > 1:
            nodes.append(node)
            continue
        if not len(_outlying(peak)):  # no channel far enough out to cost a split
            nodes.append(node)
            continue
        x, name = node.input[0], node.name
        if x not in shared:  # Q, K and V read one tensor: one split, one int8 quantisation
            copies = np.ceil(peak / (OUTLIER_RATIO * np.median(peak))).clip(1, MAX_COPIES)
            repeat = np.repeat(np.arange(len(peak)), copies.astype(np.int64) - 1)  # (R,)
            model.graph.initializer.extend([
                numpy_helper.from_array((1 / copies).astype(np.float32), f"{name}/copy_scale"),
                numpy_helper.from_array(repeat, f"{name}/copy_channels"),
            ])  # fmt: skip
            nodes += [  # x (..., K) -> split (..., K + R)
                helper.make_node("Mul", [x, f"{name}/copy_scale"], [f"{name}/scaled"],
                                 name=f"{name}/scale"),
                helper.make_node("Gather", [f"{name}/scaled", f"{name}/copy_channels"],
                                 [f"{name}/copies"], name=f"{name}/copy", axis=-1),
                helper.make_node("Concat", [f"{name}/scaled", f"{name}/copies"],
                                 [f"{name}/split"], name=f"{name}/split", axis=-1),
            ]  # fmt: skip
            shared[x] = (f"{name}/split", repeat)
        node.input[0], repeat = shared[x]
        w = numpy_helper.to_array(weights[node.input[1]])  # (K, N) -> (K + R, N)
        weights[node.input[1]].CopyFrom(
            numpy_helper.from_array(np.concatenate([w, w[repeat]]), node.input[1])
        )
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _outlying(peak: np.ndarray) -> np.ndarray:
    """The channels over ``OUTLIER_RATIO`` x the median peak, where one passes ``SPLIT_RATIO``."""
    median = np.median(peak)
    if not peak.max() > SPLIT_RATIO * median:
        return np.zeros(0, np.int64)
    return np.flatnonzero(peak > OUTLIER_RATIO * median)


def _gelu_sides(model, peaks, weights, uses) -> dict[str, list[onnx.NodeProto]]:
    """FFN outputs ``gelu(x @ A + b) @ W``: their outlier hidden channels ``J`` are zeroed in
    ``A`` and ``b`` (GELU(0) = 0, so no mask runs over the wide hidden tensor) and computed
    beside in float32: ``gelu(x @ A[:, J] + b[J]) @ W[J]``. Returns the nodes replacing
    each such output MatMul, by name; ``A``, ``b`` and ``W`` are edited in place."""
    made = {n.output[0]: n for n in model.graph.node}
    out = {}
    for node in weight_matmuls(model):
        gelu = made.get(node.input[0])
        if gelu is None or gelu.op_type != "BiasGelu" or node.input[0] not in peaks:
            continue
        first = made.get(gelu.input[0])
        if first is None or first.op_type != "MatMul" or first.input[1] not in weights:
            continue
        single = (node.input[1], first.input[1], gelu.input[1], gelu.input[0], node.input[0])
        if gelu.input[1] not in weights or any(uses[t] > 1 for t in single):
            continue
        peak = peaks[node.input[0]]
        hidden = _outlying(peak)  # (J,)
        if not len(hidden):
            continue
        a, b, w = (numpy_helper.to_array(weights[t]).copy()
                   for t in (first.input[1], gelu.input[1], node.input[1]))  # fmt: skip
        name, y = node.name, node.output[0]
        model.graph.initializer.extend([
            numpy_helper.from_array(a[:, hidden], f"{name}/hidden_weight"),  # (K, J)
            numpy_helper.from_array(b[hidden], f"{name}/hidden_bias"),
            numpy_helper.from_array(w[hidden], f"{name}/outlier_weight"),  # (J, N)
        ])  # fmt: skip
        a[:, hidden], b[hidden], w[hidden] = 0, 0, 0
        for t, v in zip((first.input[1], gelu.input[1], node.input[1]), (a, b, w), strict=True):
            weights[t].CopyFrom(numpy_helper.from_array(v, t))
        node.output[0] = f"{name}/int8"
        out[name] = [
            node,
            helper.make_node("MatMul", [first.input[0], f"{name}/hidden_weight"],
                             [f"{name}/h_outliers"], name=f"{name}/hidden/outliers"),
            helper.make_node("BiasGelu", [f"{name}/h_outliers", f"{name}/hidden_bias"],
                             [f"{name}/x_outliers"], name=f"{name}/gelu", domain="com.microsoft"),
            helper.make_node("MatMul", [f"{name}/x_outliers", f"{name}/outlier_weight"],
                             [f"{name}/y_outliers"], name=f"{name}/outliers"),
            helper.make_node("Add", [f"{name}/int8", f"{name}/y_outliers"], [y],
                             name=f"{name}/sum"),
        ]  # fmt: skip
    return out


def _dynamic(model: onnx.ModelProto, exclude: tuple[str, ...] = ()) -> onnx.ModelProto:
    model = _named(model)
    nodes = [n.name for n in weight_matmuls(model) if n.name not in exclude]
    nodes += [n.name for n in model.graph.node if n.op_type == "Attention"]
    return _quantize_dynamic(model, nodes=nodes)


def _dynamic_split(model: onnx.ModelProto, calibration: Feeds) -> onnx.ModelProto:
    model = split_outliers(model, channel_peaks(model, calibration))
    sides = tuple(n.name for n in model.graph.node if n.name.endswith("/outliers"))
    model = scores_int8(_dynamic(model, exclude=sides))
    for node in model.graph.node:  # tanh GELU: 20% faster, within the gate like the int8
        node.op_type = "FastGelu" if node.op_type == "BiasGelu" else node.op_type
    return model


def scores_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Attention scores ``Q @ K^T`` (a MatMul of two computed tensors not fed by Softmax)
    in dynamic int8: each side quantised per tensor before the Transpose feeding it (which
    then moves uint8), and one float scale that takes in a following Div by a constant
    (1/sqrt(d)). ``P @ V`` stays float32: uint8 softmax weights drift too far."""
    model = _named(model)  # a copy
    made = {n.output[0]: n for n in model.graph.node}
    uses = collections.Counter(i for n in model.graph.node for i in n.input)
    reader = {i: n for n in model.graph.node for i in n.input}
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    drop, new, folded = set(), {}, set()
    for node in model.graph.node:
        src = [made.get(i) for i in node.input]  # None for weights and graph inputs
        if node.op_type != "MatMul" or not all(src) or src[0].op_type == "Softmax":
            continue
        p = y = node.output[0]
        div, scale = reader[y] if uses[y] == 1 else node, np.float32(1)
        if div.op_type == "Div" and div.input[1] in weights:
            drop.add(y := div.output[0])
            folded.add(div.input[1])
            scale = (1 / weights[div.input[1]]).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(scale, f"{p}/alpha"))
        new[p] = []
        for i, x in enumerate(node.input):  # (..., M, K) x (..., K, N)
            t = src[i] if src[i].op_type == "Transpose" and uses[x] == 1 else None
            q = [f"{p}/q{i}" + "/pre" * bool(t), f"{p}/s{i}", f"{p}/z{i}"]
            new[p].append(helper.make_node("DynamicQuantizeLinear", [t.input[0] if t else x], q))
            if t is not None:  # quantise, then transpose uint8
                drop.add(t.output[0])
                new[p].append(helper.make_node("Transpose", q[:1], [f"{p}/q{i}"]))
                new[p][-1].attribute.extend(t.attribute)
        new[p] += [  # -> (..., M, N) int32 -> float32 * s0 * s1 * alpha
            helper.make_node("MatMulInteger", [f"{p}/q0", f"{p}/q1", f"{p}/z0", f"{p}/z1"],
                             [f"{p}/i"]),
            helper.make_node("Cast", [f"{p}/i"], [f"{p}/f"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", [f"{p}/s0", f"{p}/s1"], [f"{p}/s"]),
            helper.make_node("Mul", [f"{p}/s", f"{p}/alpha"], [f"{p}/scale"]),
            helper.make_node("Mul", [f"{p}/f", f"{p}/scale"], [y]),
        ]  # fmt: skip
    kept = [m for n in model.graph.node if n.output[0] not in drop
            for m in new.get(n.output[0], [n])]  # fmt: skip
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {i for n in kept for i in n.input}  # the folded divisors go
    keep = [i for i in model.graph.initializer if i.name in used or i.name not in folded]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return _named(model)  # names the new nodes


def _dynamic_ffn_blocks(model: onnx.ModelProto) -> onnx.ModelProto:
    model = _named(model)
    return _matmul_nbits(_dynamic(model, exclude=tuple(gelu_fed(model))))


def _blocks(model: onnx.ModelProto) -> onnx.ModelProto:
    if any(n.op_type == "Attention" for n in model.graph.node):
        model = _quantize_dynamic(_named(model), op_types=["Attention"])
    return _matmul_nbits(model)


def _dynamic_all(model: onnx.ModelProto) -> onnx.ModelProto:
    return _quantize_dynamic(model)


def _matmul_nbits(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every float MatMul on a constant weight -> MatMulNBits, 8 bits, blocks of 32.

    ``accuracy_level=4`` computes in int8: activations are quantised per row and block.
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with _quiet():  # it logs once per node
        quantizer = MatMulNBitsQuantizer(
            model, bits=8, block_size=32, is_symmetric=True, accuracy_level=4
        )
        quantizer.process()
    return quantizer.model.model


def _quantize_dynamic(model, nodes: list[str] | None = None, op_types: list[str] | None = None):
    """onnxruntime's dynamic int8 (QInt8 weights per channel) of ``nodes`` or ``op_types``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        quantize_dynamic(
            src, dst, weight_type=QuantType.QInt8, per_channel=True,
            nodes_to_quantize=nodes, op_types_to_quantize=op_types,
            # fused com.microsoft ops defeat shape inference; their tensors are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip
        return onnx.load(dst)


class _quiet:
    """Raise the root logger to ERROR for a block (the quantisers log once per tensor)."""

    def __enter__(self):
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.getLogger().setLevel(self.level)
