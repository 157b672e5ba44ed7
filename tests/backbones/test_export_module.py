"""`embedkit.backbones.export` on small torch modules: taps, pooling, precision, failures."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from embedkit.backbones import POOLINGS, export, read_metadata
from embedkit.errors import ExportError
from tests.backbones.conftest import ort_session


class TinyNet(torch.nn.Module):
    """conv (stride 2) -> relu -> conv (stride 2) -> global pool -> linear."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act = torch.nn.ReLU()
        self.block = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        x = self.block(self.act(self.stem(x)))  # (N, 16, H/4, W/4)
        return self.fc(self.pool(x).flatten(1))


@pytest.fixture(scope="module")
def tiny_two_taps(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    net = TinyNet().eval()
    report = export(net, torch.randn(2, 3, 32, 32), out=path, taps=["block", "fc"], pooling="none")
    return net, path, report


def test_two_taps_are_two_outputs_of_one_graph(tiny_two_taps):
    net, path, report = tiny_two_taps
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["block", "fc"]
    x = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)
    outs = ort_session(path).run(None, {"x": x})  # batch 5: the batch axis is dynamic
    meta = read_metadata(path)["embedkit.taps"]
    assert [list(o.shape[1:]) for o in outs] == [t["shape"] for t in meta] == [[16, 8, 8], [5]]
    assert [t["stride"] for t in meta] == [4, None]
    with torch.no_grad():
        assert np.allclose(outs[1], net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_metadata_follows_the_contract(tiny_two_taps):
    _, path, report = tiny_two_taps
    meta = read_metadata(path)
    assert meta["embedkit.format"] == "1" and meta["embedkit.precision"] == "fp32"
    assert meta["embedkit.preprocess"] == {"kind": "array", "input": "x", "dtype": "float32"}
    for tap in meta["embedkit.taps"]:
        assert set(tap) == {"name", "output", "shape", "pooling", "stride", "layer"}
        assert tap["pooling"] in POOLINGS
    verify = meta["embedkit.verify"]
    assert verify["passed"] and verify["max_abs_diff"] < 1e-4 and verify["min_cosine"] > 0.9999
    assert report.verify["max_abs_diff"] == verify["max_abs_diff"]


@pytest.mark.parametrize("pooling, width", [("avg", 16), ("max", 16), ("avgmax", 32),
                                            ("gem", 16), ("none", 16 * 8 * 8)])  # fmt: skip
def test_every_spatial_pooling_matches_torch(pooling, width, tmp_path):
    net = TinyNet().eval()
    report = export(net, torch.randn(2, 3, 32, 32), out=tmp_path / "p.onnx", taps=["block"],
                    pooling=pooling)  # fmt: skip
    x = np.random.default_rng(1).normal(size=(3, 3, 32, 32)).astype(np.float32)
    (onnx_out,) = ort_session(tmp_path / "p.onnx").run(None, {"x": x})
    feats = net.block(net.act(net.stem(torch.from_numpy(x)))).detach()  # (3, 16, 8, 8)
    expected = {
        "avg": feats.mean((2, 3)),
        "max": feats.amax((2, 3)),
        "avgmax": torch.cat([feats.mean((2, 3)), feats.amax((2, 3))], 1),
        "gem": feats.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3),
        "none": feats,
    }[pooling].numpy()
    assert onnx_out.reshape(3, -1).shape == (3, width)
    assert np.allclose(onnx_out, expected, atol=1e-5)
    assert report.taps[0].pooling == pooling


def test_model_output_tap_is_pooled_and_described(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)).eval()
    report = export(net, torch.randn(2, 3, 16, 16), out=tmp_path / "o.onnx", pooling="max")
    (tap,) = read_metadata(tmp_path / "o.onnx")["embedkit.taps"]
    assert tap == {"name": "output", "output": "output", "shape": [6], "pooling": "max",
                   "stride": 2, "layer": None}  # fmt: skip
    assert report.verify["passed"]


def test_fold_normalize_takes_raw_pixels(tmp_path):
    net = TinyNet().eval()
    spec = {"kind": "image", "input": "pixel_values", "size": [32, 32], "resize_shorter": None,
            "crop": None, "mean": [127.0] * 3, "std": [128.0] * 3, "color": "RGB",
            "layout": "NCHW", "interpolation": "bilinear", "dtype": "float32"}  # fmt: skip
    example = torch.randn(2, 3, 32, 32)
    export(net, example, out=tmp_path / "plain.onnx", taps=["fc"], preprocess=spec)
    export(net, example, out=tmp_path / "fold.onnx", taps=["fc"], preprocess=spec,
           fold_normalize=True)  # fmt: skip
    meta = read_metadata(tmp_path / "fold.onnx")["embedkit.preprocess"]
    assert meta["mean"] == [0.0] * 3 and meta["std"] == [1.0] * 3
    raw = np.random.default_rng(2).integers(0, 256, (4, 3, 32, 32)).astype(np.float32)
    (folded,) = ort_session(tmp_path / "fold.onnx").run(None, {"pixel_values": raw})
    (plain,) = ort_session(tmp_path / "plain.onnx").run(None, {"pixel_values": (raw - 127) / 128})
    assert np.allclose(folded, plain, atol=1e-5)


@pytest.mark.parametrize("precision, keep_io", [("fp16", False), ("fp16", True), ("int8", False)])
def test_precision_variants_report_drift_vs_fp32(precision, keep_io, tmp_path):
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 32))
    report = export(mlp.eval(), torch.randn(4, 64), out=tmp_path / "m.onnx", taps=["output"],
                    precision=precision, keep_io_types=keep_io)  # fmt: skip
    v = report.verify
    assert v["ran"] and v["passed"] and 0 < v["max_abs_diff"] < 0.5 and v["min_cosine"] > 0.98
    model = onnx.load(str(tmp_path / "m.onnx"))
    in_type = model.graph.input[0].type.tensor_type.elem_type
    fp16_io = precision == "fp16" and not keep_io
    assert in_type == (onnx.TensorProto.FLOAT16 if fp16_io else onnx.TensorProto.FLOAT)
    if precision == "int8":
        # 2-D Linear layers trace to Gemm: onnxruntime's dynamic int8 takes those
        quantised = ("MatMulNBits", "MatMulInteger", "DynamicQuantizeMatMul")
        assert sum(v["fusions"].get(op, 0) for op in quantised) >= 1
    assert read_metadata(tmp_path / "m.onnx")["embedkit.precision"] == precision


class Jittery(torch.nn.Module):
    """Adds a random number chosen in Python: tracing freezes it, so ONNX != torch."""

    def forward(self, x):
        return x * float(torch.rand(()) * 10 + 1)


def test_over_tolerance_fails_unless_forced(tmp_path):
    out = tmp_path / "j.onnx"
    with pytest.raises(ExportError, match=r"max abs diff .* min cosine .* --force"):
        export(Jittery(), torch.ones(2, 4) + torch.arange(4.0), out=out)
    assert not out.exists()
    report = export(Jittery(), torch.ones(2, 4) + torch.arange(4.0), out=out, force=True)
    assert out.exists() and report.verify["passed"] is False


class Spectral(torch.nn.Module):
    def forward(self, x):  # complex eigenvalues: neither TorchScript nor dynamo converts them
        return torch.linalg.eigvals(x).abs()


def test_untraceable_layer_is_named(tmp_path):
    net = torch.nn.Sequential()
    net.add_module("conv", torch.nn.Conv2d(3, 4, 1))
    net.add_module("spectrum", Spectral())
    with pytest.raises(ExportError, match=r"at layer 'spectrum': .*aten::linalg_eig.*Sequential"):
        export(net, torch.randn(2, 3, 4, 4), out=tmp_path / "s.onnx", pooling="none")


def _graph_ort_cannot_run() -> bytes:
    """A valid ONNX graph whose op no onnxruntime execution provider implements."""
    from onnx import TensorProto, helper

    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def test_unrunnable_fp16_graph_is_reported_not_hidden():
    from embedkit.backbones.parity import verify

    feeds, ref = {"x": np.ones((2, 4), np.float32)}, [np.ones((2, 4), np.float32)]
    report = verify(_graph_ort_cannot_run(), feeds, ref, ["y"], "fp16")
    assert report["ran"] is False and report["passed"] is None
    assert "CPU EP cannot run this fp16 graph" in report["reason"]
    with pytest.raises(ExportError, match="onnxruntime cannot run the exported fp32 graph"):
        verify(_graph_ort_cannot_run(), feeds, ref, ["y"], "fp32")


def test_verification_set_reports_percentiles_and_gates_on_p1():
    from onnx import TensorProto, helper

    from embedkit.backbones.parity import verify_set

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    feeds = [{"x": x[lo : lo + 32]} for lo in range(0, 300, 32)]  # batch by batch
    refs = [[f["x"].copy()] for f in feeds]
    good = verify_set(model.SerializeToString(), feeds, refs, ["y"], "int8")
    assert good["passed"] and good["texts"] == 300 and good["p1_cosine"] > 0.99999
    refs[3][0][:5] = -refs[3][0][:5]  # 5 of 300 items point the other way: p1 is -1
    with pytest.raises(ExportError, match=r"p1 cosine -1\.0+ \(limit 0\.99\)"):
        verify_set(model.SerializeToString(), feeds, refs, ["y"], "int8")
    kept = verify_set(model.SerializeToString(), feeds, refs, ["y"], "int8", force=True)
    assert kept["passed"] is False and kept["median_cosine"] > 0.99999
