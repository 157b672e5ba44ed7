"""The battery's assets: tiny ONNX graphs and seed stores that failed runs must leave alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.extract.extract_graphs import (
    make_array_model,
    make_image_model,
    make_log_model,
    make_text_model,
)
from tests.reliability.cases_images import GOOD_IMAGES, GOOD_X
from tests.reliability.cases_stores import write_v1
from tests.reliability.harness import Runner


@pytest.fixture(scope="session")
def runner(tmp_path_factory):
    """One process that runs every area's cases in turn (imports paid once a session)."""
    served = Runner(tmp_path_factory.mktemp("runner") / "stderr.log")
    yield served
    served.close()


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    return {
        "image": make_image_model(root / "image.onnx"),
        "image_plain": make_image_model(root / "image_plain.onnx", metadata=False),
        "text": make_text_model(root / "text.onnx"),
        "array": make_array_model(root / "array.onnx"),
        "log": make_log_model(root / "log.onnx"),
    }


@pytest.fixture(scope="session")
def seeds(assets, tmp_path_factory) -> dict[str, Path]:
    """One good store per model, made by a real extraction of good inputs."""
    from embedkit.extract import extract

    root = tmp_path_factory.mktemp("seeds")
    for rel, data in GOOD_IMAGES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "a.txt").write_text("the cat\nthe dog\n")
    np.save(root / "x.npy", GOOD_X)
    np.save(root / "pos.npy", np.abs(GOOD_X) + 1)
    sources = {"image": "imgs", "text": "a.txt", "array": "x.npy", "log": "pos.npy"}
    stores = {}
    for name, source in sources.items():
        stores[name] = root / f"{name}.h5"
        extract(assets[name], root / source, stores[name], progress=False)
    stores |= head_seeds(root)
    for name in ("lab", "array"):  # schema-1 (one-file) copies
        stores[f"{name}_v1"] = write_v1(stores[name], root / f"{name}_v1.h5")
    return stores


def head_seeds(root: Path) -> dict[str, Path]:
    """A labelled store (60 x 3, split), its 5-wide twin, and heads trained on the first."""
    from embedkit.heads import train_on_store
    from embedkit.rows import from_arrays

    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    splits = ["test" if i % 5 == 0 else "train" for i in range(60)]
    seeds = {"lab": root / "lab.h5", "wide": root / "wide.h5"}
    for name, width in (("lab", 3), ("wide", 5)):
        X = (rng.normal(size=(60, width)) + y[:, None]).astype(np.float32)
        from_arrays(seeds[name], X, y, splits=splits).close()
    twin = rng.normal(size=(60, 3)).astype(np.float32)  # same fingerprint, other rows
    for name, X in (("twin", twin), ("short", twin[:40])):
        seeds[name] = root / f"{name}.h5"
        from_arrays(seeds[name], X, y[: len(X)], splits=splits[: len(X)]).close()
    for head, params in (("logreg", {}), ("mlp", {"hidden": 8, "max_epochs": 2})):
        seeds[f"head_{head}"] = root / f"head_{head}"
        train_on_store(seeds["lab"], head, seeds[f"head_{head}"], params=params)
    return seeds
