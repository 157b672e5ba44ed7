"""``hf:PATH`` export for today's encoder families, from tiny randomly initialised folders.

Each family (tests/tiny_encoders.py) is exported with an intermediate tap and ``last``,
verified against torch by the exporter itself, and its ``last`` output is compared with
sentence-transformers reading the same folder (pooling, Dense, normalisation, prompt).
Gemma 3 goes through the dynamo exporter and a ``.onnx.data`` file.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from embedkit.backbones import export, export_backbone, load_backbone
from embedkit.backbones.parity import TOLERANCES
from embedkit.contract import read_metadata
from embedkit.errors import ExportError, UserInputError
from tests.backbones.conftest import encode_texts, ort_session
from tests.tiny_encoders import FAMILIES, make_encoder

TEXTS = ["a short one", "Another sentence, somewhat longer than the first one is.", "ok"]
TORCHSCRIPT = [f for f in FAMILIES if f != "gemma3"]


def _export(family, tmp_path, precision="fp32", **kwargs):
    folder = make_encoder(family, tmp_path / family)
    out = tmp_path / f"{family}-{precision}.onnx"
    report = export_backbone(f"hf:{folder}", out, ["layer.0", "last"], precision=precision,
                             **kwargs)  # fmt: skip
    return folder, out, report


def _run(path, texts=TEXTS):
    meta = read_metadata(path)
    return ort_session(path).run(None, encode_texts(texts, meta)), meta


def _sentence_transformers(folder, texts):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    prompt = (model.prompts or {}).get(model.default_prompt_name or "", None)
    return model.encode(texts, prompt=prompt, convert_to_numpy=True)


@pytest.mark.parametrize("family", TORCHSCRIPT)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_family_exports_and_matches_torch(family, precision, tmp_path):
    folder, out, report = _export(family, tmp_path, precision)
    v = report.verify
    assert v["passed"] and "TorchScript" in v["exporter"]
    tol = TOLERANCES[precision]
    assert v["max_abs_diff"] <= tol.max_abs and v["min_cosine"] >= tol.min_cosine
    (layer0, last), meta = _run(out)
    assert layer0.shape == last.shape == (len(TEXTS), 32)
    assert (
        meta["embedkit.export"]["architecture"]
        .lower()
        .replace("-", "")
        .startswith(family.replace("-", "")[:5])
    )
    if precision == "fp32":  # the folder's recipe, as sentence-transformers reads it
        expected = _sentence_transformers(folder, TEXTS)
        np.testing.assert_allclose(last, expected, atol=1e-5)


def test_folder_settings_reach_the_graph(tmp_path):
    """E5-style: the query prefix is in the graph's tokenizer; max length and pooling too."""
    folder, out, report = _export("xlm-roberta", tmp_path)
    meta = read_metadata(out)
    assert meta["embedkit.export"]["prompt"] == "query: "
    assert meta["embedkit.preprocess"]["max_length"] == 64
    assert {t["pooling"] for t in meta["embedkit.taps"]} == {"mean"}
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    ours = Tokenizer.from_str(meta["embedkit.tokenizer"]).encode("Cats sleep.").ids
    assert ours == AutoTokenizer.from_pretrained(folder)("query: Cats sleep.")["input_ids"]


@pytest.mark.parametrize("pooling", ["cls", "lasttoken"])
def test_pooling_from_the_folder(pooling, tmp_path):
    folder = make_encoder("bert", tmp_path / "bert", pooling=pooling)
    backbone = load_backbone(f"hf:{folder}")
    assert backbone.default_pooling == pooling
    out = tmp_path / "m.onnx"
    report = export_backbone(backbone, out, ["last"])
    assert report.taps[0].pooling == pooling and report.verify["passed"]
    (last,), _ = _run(out)
    np.testing.assert_allclose(last, _sentence_transformers(folder, TEXTS), atol=1e-5)


@pytest.mark.slow
def test_gemma3_goes_through_dynamo_with_a_data_file(tmp_path):
    """EmbeddingGemma-like: TorchScript fails, dynamo works; prompt + two Dense + norm."""
    folder, out, report = _export("gemma3", tmp_path)
    assert "dynamo" in report.verify["exporter"] and report.verify["passed"]
    sidecar = out.with_name(out.name + ".data")
    assert sidecar.is_file() and report.size_bytes > out.stat().st_size
    (layer0, last), meta = _run(out)
    assert meta["embedkit.export"]["dense"] and meta["embedkit.export"]["prompt"]
    np.testing.assert_allclose(last, _sentence_transformers(folder, TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(last, axis=1), 1.0, atol=1e-5)

    from embedkit.extract import load_model

    before = load_model(out).sha256  # the fingerprint covers the weights file
    with sidecar.open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    assert load_model(out).sha256 != before


def test_fp16_is_refused_for_taps_past_float16_range(tmp_path):
    folder = make_encoder("gemma3", tmp_path / "g")
    backbone = load_backbone(f"hf:{folder}")
    with torch.no_grad():
        backbone.model.get_input_embeddings().weight.mul_(1e6)  # (V, D): |h| ~ 1e5
    with pytest.raises(UserInputError, match=r"fp16: .*layer.0 reaches .* over float16's 65504"):
        export_backbone(backbone, tmp_path / "m.onnx", ["layer.0"], precision="fp16")
    assert not (tmp_path / "m.onnx").exists()


class _Eigen(torch.nn.Module):
    def forward(self, x):  # (N, 4, 4) -> (N, 4): complex eigenvalues, no ONNX route
        return torch.linalg.eigvals(x).real


def test_an_unexportable_model_names_its_architecture(tmp_path):
    with pytest.raises(ExportError, match=r"architecture _Eigen\).*dynamo exporter failed"):
        export(_Eigen(), torch.randn(2, 4, 4), out=tmp_path / "e.onnx")


def test_no_stale_data_file_is_left_beside_a_new_graph(tmp_path):
    """A TorchScript export over an old dynamo one removes the old ``.onnx.data``."""
    out = tmp_path / "m.onnx"
    stale = out.with_name("m.onnx.data")
    stale.write_bytes(b"old weights")
    folder = make_encoder("bert", tmp_path / "bert")
    export_backbone(f"hf:{folder}", out, ["last"])
    assert not stale.exists()
    onnx.checker.check_model(str(out))


def test_layer_norms_stay_unfused_in_embedkit_cpu_sessions(tmp_path):
    # onnxruntime's fused CPU SkipLayerNormalization ran ~4x slower than Add + LayerNorm
    import onnxruntime as ort

    from embedkit.contract import session_kwargs

    _, out, report = _export("bert", tmp_path)
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert "SkipLayerNormalization" not in ops and ops.count("LayerNormalization") == 2 * 3
    assert report.verify["fusions"]["LayerNormalization"] == 2 * 3
    cpu, fused = ["CPUExecutionProvider"], {}
    for ours in (False, True):  # the graph each session runs, after its own optimisers
        options, kwargs = ort.SessionOptions(), session_kwargs(cpu) if ours else {}
        options.optimized_model_filepath = str(tmp_path / f"{ours}.onnx")
        ort.InferenceSession(str(out), options, providers=cpu, **kwargs)
        ran = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
        fused[ours] = ran.count("SkipLayerNormalization")
    assert fused == {False: 2 * 3, True: 0}  # a plain session fuses them again


def test_mpnet_adds_its_position_bias_and_mask_to_the_scores_once(tmp_path):
    _, out, report = _export("mpnet", tmp_path)  # 3 layers
    graph = onnx.load(out).graph
    (shared,) = [n for n in graph.node if n.op_type == "Add" and "+" in n.name]  # made once
    readers = [n for n in graph.node if shared.output[0] in n.input]
    assert len(readers) == 3 and all(n.op_type == "Add" for n in readers)
    softmax_inputs = {n.input[0] for n in graph.node if n.op_type == "Softmax"}
    assert softmax_inputs == {n.output[0] for n in readers}  # scores + bias, then softmax
    assert report.verify["passed"]
