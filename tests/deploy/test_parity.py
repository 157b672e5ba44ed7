"""Deployed model == backbone -> store -> head, for every head kind, on images and on text.

Each case trains a head on a real store made by extract from a tiny real ONNX backbone,
deploys it, runs the deployed model on the raw new items and compares with the head
applied to the store extract made of the same items.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.cli import main
from embedkit.deploy import deploy, predict
from embedkit.heads import HEADS, TORCH_HEADS

pytest.importorskip("onnxruntime")

DEFAULT = [(h, None) for h in HEADS if h != "attnpool"]
TAPPED = [("attnpool", "fmap"), ("logreg", "fmap")]
TAPPED += [("logreg", "pool+fmap"), ("mlp", "fmap+pool")]  # joined taps: standardised in the graph
# the tiny text backbone has one pooled tap: the tap cases are image cases
CASES = [("image", h, t) for h, t in DEFAULT + TAPPED] + [("text", h, t) for h, t in DEFAULT]


def _train(data, kind, head, tap, out):
    args = ["train", str(data[f"{kind}_store"]), "--head", head, "--out", str(out)]
    if tap:
        args += ["--tap", tap]
    if head == "attnpool":
        args += ["--param", "heads=2", "--param", "dim=8"]
    assert main(args) == 0


@pytest.mark.parametrize(
    ("kind", "head", "tap"), CASES, ids=[f"{h}-{t or 'default'}-{k}" for k, h, t in CASES]
)
def test_deployed_model_matches_store_and_head(data, kind, head, tap, tmp_path, capsys):
    if head in TORCH_HEADS:
        pytest.importorskip("torch")
    _train(data, kind, head, tap, tmp_path / "head")
    reference = predict(tmp_path / "head", data[f"new_{kind}_store"])  # store -> head
    summary = deploy(tmp_path / "head", tmp_path / "model.onnx")
    raw = data["new_images" if kind == "image" else "new_texts"]
    deployed = predict(tmp_path / "model.onnx", raw, progress=False)
    direct = predict(tmp_path / "head", raw, progress=False)  # raw -> recorded model -> head
    assert summary.classes == reference.classes == deployed.classes == ("cat", "dog")
    for got in (deployed, direct):
        assert got.ids == reference.ids and len(got) == (8 if kind == "image" else 12)
        assert np.abs(got.probabilities - reference.probabilities).max() < 1e-5
        assert got.labels == reference.labels
        assert got.truth == reference.truth


def test_a_spatial_head_with_two_taps_in_a_hand_edited_record_is_refused(data, tmp_path):
    import json

    from embedkit.errors import ExportError

    _train(data, "image", "attnpool", "fmap", tmp_path / "head")
    path = tmp_path / "head" / "train.json"
    record = json.loads(path.read_text())
    features = record["features"]
    features["taps"] = features["taps"] * 2  # train never writes this: attnpool reads one tap
    path.write_text(json.dumps(record))
    with pytest.raises(ExportError, match="reads one tap, got 2"):
        deploy(tmp_path / "head", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
