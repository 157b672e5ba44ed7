"""Fixtures for extract tests: tiny ONNX graphs (see extract_graphs.py) and tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.extract.extract_graphs import (
    make_array_model,
    make_image_model,
    make_text_model,
    write_images,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "image": make_image_model(root / "image.onnx"),
        "image_other": make_image_model(root / "image_other.onnx", seed=9),
        "image_plain": make_image_model(root / "image_plain.onnx", metadata=False),
        "text": make_text_model(root / "text.onnx"),
        "array": make_array_model(root / "array.onnx"),
    }


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images") / "images")


@pytest.fixture()
def array_file(tmp_path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(5).normal(size=(10, 6)).astype(np.float32))
    return path
