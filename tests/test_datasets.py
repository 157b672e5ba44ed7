"""The offline dataset readers and the full-frame preprocessing override."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedkit.datasets import (
    FASHION_MNIST_CLASSES,
    FORTUNE_TOPICS,
    load_fashion_mnist,
    load_fortunes,
)
from embedkit.errors import UserInputError
from tests.extract.extract_graphs import make_array_model, make_image_model

DATA = Path(__file__).resolve().parents[1] / "data"
needs_data = pytest.mark.skipif(
    not (DATA / "fortunes" / "science").exists(), reason="run `make data` first"
)


@needs_data
def test_fashion_mnist_and_fortunes_read_from_the_debian_files():
    X, y = load_fashion_mnist(DATA / "fashion-mnist", "test")
    assert X.shape == (10_000, 28, 28) and X.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * len(FASHION_MNIST_CLASSES)
    texts, topics = load_fortunes(DATA / "fortunes")
    assert len(texts) == len(topics) > 3000 and set(topics) == set(FORTUNE_TOPICS)
    assert all(t and "%" not in t.split()[0] for t in texts[:50])


def test_missing_data_says_how_to_fetch_it(tmp_path):
    with pytest.raises(UserInputError, match="fetch_data.sh"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(UserInputError, match="split='dev' is not valid"):
        load_fashion_mnist(tmp_path, "dev")


def test_preprocess_full_frame_clears_the_resize_and_crop(tmp_path):
    from embedkit.extract import load_model

    model = make_image_model(tmp_path / "m.onnx")
    recipe = {**load_model(model).preprocess.to_dict(), "resize_shorter": 36, "crop": "center"}
    (tmp_path / "m.onnx.json").write_text(json.dumps(recipe))  # a photo recipe beside it
    photo = load_model(model).preprocess
    assert photo.resize_shorter == 36 and photo.crop == "center"
    spec = load_model(model, preprocess="full-frame").preprocess
    assert spec.kind == "image" and spec.resize_shorter is None and spec.crop is None
    assert spec.size == photo.size and spec.mean == photo.mean  # the rest is the model's
    with pytest.raises(UserInputError, match="full-frame needs an image model"):
        load_model(make_array_model(tmp_path / "a.onnx"), preprocess="full-frame")
