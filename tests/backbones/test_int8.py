"""int8 export chooses its scheme per model: the fastest one that passes the drift gate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from embedkit.backbones import export, read_metadata
from embedkit.backbones.int8 import schemes
from embedkit.errors import ExportError
from tests.backbones.conftest import ort_session


class Tokens(torch.nn.Module):
    """(N, S, 16) -> Linear -> GELU -> Linear, mean over the tokens after the first.

    ``spike`` multiplies hidden values ``where``:

    - ``token``: the first token's: an outlier token whose range, quantised per tensor,
      leaves the other tokens a few int8 steps;
    - ``channel``: hidden channel 5 of every token, as GELU outputs peak in mpnet, its
      weights in the second Linear divided by ``spike`` (it does not drown the others);
    - ``half``: every other hidden channel, channels the second Linear ignores: each
      block of 32 holds outliers that leave the rest ~0, and with half the channels
      outliers none passes the median channel's peak.
    """

    def __init__(self, spike: float, where: str = "token"):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(16, 64), torch.nn.Linear(64, 8)
        scale = torch.ones(1, 6, 64)
        if where == "half":
            scale[..., ::2] = spike
            with torch.no_grad():
                self.b.weight[:, ::2] = 0
        elif where == "channel":
            scale[..., 5] = spike
            with torch.no_grad():
                self.b.weight[:, 5] /= spike
        else:
            scale[0, 0] = spike
        self.register_buffer("scale", scale)

    def forward(self, x):  # (N, 6, 16)
        h = torch.nn.functional.gelu(self.a(x)) * self.scale  # (N, 6, 64)
        return self.b(h)[:, 1:].mean(1)  # (N, 8): the outlier token is not in the output


def _export(spike, path, where="token", **options):
    net = Tokens(spike, where).eval()
    return export(net, torch.randn(3, 6, 16), out=path, precision="int8", **options)


def test_the_fastest_scheme_that_passes_is_kept(tmp_path):
    report = _export(1.0, tmp_path / "plain.onnx")
    v = report.verify
    assert v["passed"] and v["int8"]["scheme"] == "dynamic"
    assert [t["scheme"] for t in v["int8"]["tried"]] == ["dynamic"]  # nothing slower built
    assert v["fusions"].get("MatMulInteger", 0) == 2 and "MatMulNBits" not in v["fusions"]
    assert read_metadata(tmp_path / "plain.onnx")["embedkit.export"]["int8_scheme"] == "dynamic"
    assert "int8 scheme: dynamic (tried, fastest first: dynamic" in report.summary()


def test_an_outlier_token_moves_the_choice_to_blocks(tmp_path):
    """Per-tensor int8 fails the gate; MatMulNBits' per-row blocks pass it."""
    report = _export(3000.0, tmp_path / "spiky.onnx")
    v = report.verify
    tried = {t["scheme"]: t for t in v["int8"]["tried"]}
    assert list(tried) == ["dynamic", "dynamic+split", "dynamic+ffn-blocks", "blocks"]
    assert not tried["dynamic"]["passed"] and tried["dynamic"]["min_cosine"] < 0.98
    assert not tried["dynamic+split"]["passed"]  # every channel peaks on that token
    assert v["passed"] and v["int8"]["scheme"] == "blocks" and v["min_cosine"] >= 0.98
    assert v["fusions"]["MatMulNBits"] == 2
    x = np.random.default_rng(1).standard_normal((4, 6, 16)).astype(np.float32)
    (got,) = ort_session(tmp_path / "spiky.onnx").run(None, {"x": x})
    with torch.no_grad():
        want = Tokens(3000.0).eval()(torch.from_numpy(x)).numpy()
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.98


def test_an_outlier_channel_is_split_into_copies_for_dynamic_int8(tmp_path):
    """One hidden channel peaks at ~60x the others on every token: per-tensor int8 leaves
    the others a few steps; splitting it into scaled copies keeps the fast kernel."""
    out = tmp_path / "channel.onnx"
    v = _export(60.0, out, where="channel").verify
    tried = {t["scheme"]: t for t in v["int8"]["tried"]}
    assert list(tried) == ["dynamic", "dynamic+split"] and not tried["dynamic"]["passed"]
    assert v["passed"] and v["int8"]["scheme"] == "dynamic+split"
    assert v["fusions"].get("MatMulInteger", 0) + v["fusions"].get("DynamicQuantizeMatMul", 0) == 2
    model = onnx.load(out)
    assert not [n for n in model.graph.node if n.name.endswith("/outliers")]  # no float32 side
    (split,) = [n for n in model.graph.node if n.op_type == "Concat" and n.name.endswith("/split")]
    copies = next(i for i in model.graph.initializer if i.name.endswith("/copy_channels"))
    assert set(onnx.numpy_helper.to_array(copies)) == {5}  # channel 5 of 64, repeated
    x = np.random.default_rng(1).standard_normal((4, 6, 16)).astype(np.float32)
    (got,) = ort_session(out).run(None, {"x": x})
    with torch.no_grad():
        want = Tokens(60.0, "channel").eval()(torch.from_numpy(x)).numpy()
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.99


def test_no_scheme_passing_is_refused_with_each_cosine(tmp_path):
    out = tmp_path / "worse.onnx"
    with pytest.raises(ExportError, match=r"every scheme tried: dynamic min cosine 0\.\d+, "
                       r"dynamic\+split .*blocks min cosine .*--force"):  # fmt: skip
        _export(1e5, out, where="half")
    assert not out.exists()
    kept = _export(1e5, out, where="half", force=True).verify
    best = max(t["gate_cosine"] for t in kept["int8"]["tried"])
    assert not kept["passed"] and kept["min_cosine"] == best  # the closest one is kept


def test_schemes_depend_on_the_graph():
    conv = onnx.helper.make_node("Conv", ["x", "w"], ["y"])
    graph = onnx.helper.make_graph([conv], "g", [], [], [onnx.numpy_helper.from_array(
        np.ones((1, 1, 1, 1), np.float32), "w")])  # fmt: skip
    assert [s.name for s in schemes(onnx.helper.make_model(graph))] == ["dynamic"]


def test_matmuls_reading_one_tensor_share_its_split_and_int8_quantisation():
    """Attention's Q, K and V read one tensor: one split (copies of channel 3, each within
    3x the median channel's peak), one int8 quantisation; the outputs are unchanged."""
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((16, 8)).astype(np.float32) for _ in range(3)]
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(3)], "qkv",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 6, 16])],
        [helper.make_tensor_value_info(f"y{i}", onnx.TensorProto.FLOAT, None) for i in range(3)],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((4, 6, 16)).astype(np.float32)
    x[..., 3] *= 30  # channel 3 is the outlier on every token
    scheme = next(s for s in schemes(model, [{"x": x}]) if s.name == "dynamic+split")
    built = scheme.build(model)
    ops = [n.op_type for n in built.graph.node]
    assert ops.count("Concat") == ops.count("DynamicQuantizeLinear") == 1
    assert ops.count("MatMulInteger") == 3 and "MatMul" not in ops  # no float32 side
    peaks = np.abs(x).reshape(-1, 16).max(0)
    limit = 3 * np.median(peaks)  # OUTLIER_RATIO
    copies = int(np.ceil(peaks[3] / limit))
    rows = {i.name: list(i.dims) for i in built.graph.initializer if i.name.endswith("quantized")}
    assert sorted(rows.values()) == [[16 + copies - 1, 8]] * 3  # W's row 3 repeated
    import onnxruntime as ort

    session = ort.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, w in zip(session.run(None, {"x": x}), weights, strict=True):
        want = (x @ w).reshape(-1, 8)
        got = got.reshape(-1, 8)
        cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.min() > 0.99


def test_outlier_gelu_channels_are_zeroed_before_gelu_and_computed_beside():
    """``gelu(x @ A + b) @ W`` with hidden channel 5 at ~300: its column of ``A`` and ``b``
    are zeroed (GELU(0) = 0, no mask over the wide hidden tensor) and a float32 side path
    computes ``gelu(x @ A[:, 5] + b[5]) @ W[5]``."""
    from math import erf

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((16, 64)).astype(np.float32), np.zeros(64, np.float32)
    w = rng.standard_normal((64, 8)).astype(np.float32)
    a[:, 5], b[5], w[5] = a[:, 5] * 30, 300, w[5] / 30
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = helper.make_graph([
        helper.make_node("MatMul", ["x", "a"], ["h"]),
        helper.make_node("BiasGelu", ["h", "b"], ["g"], domain="com.microsoft"),
        helper.make_node("MatMul", ["g", "w"], ["y"]),
    ], "ffn", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 6, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in {"a": a, "b": b, "w": w}.items()])  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    x = rng.standard_normal((4, 6, 16)).astype(np.float32)
    scheme = next(s for s in schemes(model, [{"x": x}]) if s.name == "dynamic+split")
    built = scheme.build(model)
    byname = {n.name: n for n in built.graph.node}
    hidden = next(n.output[0] for n in built.graph.node if n.op_type == "FastGelu"
                  and not n.name.endswith("/gelu"))  # fmt: skip
    assert not any(n.op_type == "Mul" and hidden in n.input for n in built.graph.node)
    side = sorted(k for k in byname if k.endswith("/outliers"))
    assert [byname[k].op_type for k in side] == ["MatMul", "MatMul"]  # x @ A[:, J], g_J @ W[J]
    import onnxruntime as ort

    session = ort.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x})
    h = x @ a + b
    want = (0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))) @ w
    got, want = got.reshape(-1, 8), want.reshape(-1, 8)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.99


def test_attention_scores_run_in_int8_and_softmax_weights_in_float():
    """``softmax(Q @ K^T / 8) @ V``: the scores' MatMul becomes ``MatMulInteger`` (its
    inputs quantised before their Transposes, the Div folded into its scale); ``P @ V``
    stays a float MatMul; the output stays within int8 drift of the float graph."""
    import onnxruntime as ort

    from embedkit.backbones.int8 import scores_int8

    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = helper.make_graph([
        helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),  # (n, 2, 5, 8)
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),  # (n, 2, 8, 5)
        helper.make_node("MatMul", ["qt", "kt"], ["scores"]),
        helper.make_node("Div", ["scores", "root"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ], "attention", [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, ["n", 5, 2, 8])
                     for x in "qk"] + [helper.make_tensor_value_info(
                         "v", onnx.TensorProto.FLOAT, ["n", 2, 5, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(8.0, np.float32), "root")])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    built = scores_int8(model)
    ops = [n.op_type for n in built.graph.node]
    assert ops.count("MatMulInteger") == 1 and ops.count("MatMul") == 1  # P @ V in float
    assert "Div" not in ops and ops.count("DynamicQuantizeLinear") == 2
    moved = [n for n in built.graph.node if n.op_type == "Transpose"]
    assert all(n.input[0].endswith("/pre") for n in moved)  # uint8 moves, not float
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal((3, 5, 2, 8)).astype(np.float32) for x in "qk"}
    feeds["v"] = rng.standard_normal((3, 2, 5, 8)).astype(np.float32)
    got, want = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                 .run(None, feeds)[0].reshape(-1, 8) for m in (built, model))  # fmt: skip
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.99 and np.abs(got - want).max() > 0  # quantised, and close
