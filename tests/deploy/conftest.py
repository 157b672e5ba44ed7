"""Deploy fixtures: tiny real ONNX backbones (tests/extract/extract_graphs.py), raw data,
and the stores extract made from them, each built once per module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkit.extract import extract
from tests.extract.extract_graphs import make_image_model, make_text_model, write_images

TEXT_WORDS = "the cat dog sat on mat a big small red blue ran fast slow".split()


def write_texts(path: Path, n: int, seed: int) -> Path:
    """A CSV of short texts over the tiny vocabulary, labelled by which animal leads."""
    rng = np.random.default_rng(seed)
    rows = ["id,text,label"]
    for i in range(n):
        animal = ("cat", "dog")[i % 2]
        words = rng.choice(TEXT_WORDS, size=int(rng.integers(3, 9))).tolist()
        rows.append(f"t{i},{animal} {' '.join(words)},{animal}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Train and new data for the tiny image and text backbones, and their stores."""
    root = tmp_path_factory.mktemp("deploy")
    paths = {
        "image_model": make_image_model(root / "image.onnx"),
        "text_model": make_text_model(root / "text.onnx"),
        "images": write_images(root / "images", per_class=20),
        "new_images": write_images(root / "new_images", per_class=4),
        "texts": write_texts(root / "texts.csv", 80, seed=0),
        "new_texts": write_texts(root / "new_texts.csv", 12, seed=1),
    }
    for kind in ("image", "text"):
        src = paths["images" if kind == "image" else "texts"]
        paths[f"{kind}_store"] = root / f"{kind}.h5"
        extract(paths[f"{kind}_model"], src, paths[f"{kind}_store"], progress=False)
        new = paths["new_images" if kind == "image" else "new_texts"]
        paths[f"new_{kind}_store"] = root / f"new_{kind}.h5"
        extract(paths[f"{kind}_model"], new, paths[f"new_{kind}_store"], progress=False)
    return paths
