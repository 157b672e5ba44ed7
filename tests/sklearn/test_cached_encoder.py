"""CachedEncoder: a real ONNX Runtime model behind a scikit-learn transformer, with the feature
store as its cache (real HDF5 files), inside Pipeline, GridSearchCV and clone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

from embedkit.errors import StoreMismatchError, UserInputError
from embedkit.extract import extract
from embedkit.sklearn import CachedEncoder
from embedkit.store import FeatureStore
from tests.extract.extract_graphs import make_image_model, make_text_model, write_images

TEXTS = ["the cat sat", "a dog ran fast", "the red mat", "a big blue dog", "cat on mat",
         "the dog sat", "a small cat ran", "blue dog on a mat"]  # fmt: skip
LABELS = ["cat", "dog", "cat", "dog", "cat", "dog", "cat", "dog"]


def _any_width_model(path):
    """y = tanh(x) over (N, D) with D left open: every width the estimator checks try."""
    graph = helper.make_graph(
        [helper.make_node("Tanh", ["x"], ["y"])],
        "tanh",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "D"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "D"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "text": make_text_model(root / "text.onnx"),
        "image": make_image_model(root / "image.onnx"),
        "other": make_image_model(root / "other.onnx", seed=3),
        "any": _any_width_model(root / "tanh.onnx"),
    }


def test_estimator_checks(models):
    check_estimator(CachedEncoder(str(models["any"])))


def test_features_equal_extract_and_second_call_computes_nothing(models, tmp_path):
    store = tmp_path / "cache.h5"
    enc = CachedEncoder(models["text"], store=store, batch_size=3)
    X = enc.fit_transform(TEXTS[:5])
    assert X.shape == (5, 8) and X.dtype == np.float32
    (tmp_path / "t.txt").write_text("\n".join(TEXTS[:5]) + "\n")
    extract(models["text"], tmp_path / "t.txt", tmp_path / "ref.h5", progress=False)
    with FeatureStore(tmp_path / "ref.h5") as ref:
        np.testing.assert_array_equal(X, ref.features())
    before = store.stat().st_mtime_ns
    again = enc.transform(list(reversed(TEXTS[:5])) + [TEXTS[0]])  # order and repeats
    np.testing.assert_array_equal(again, X[[4, 3, 2, 1, 0, 0]])
    assert store.stat().st_mtime_ns == before  # all cached: the store is not written
    more = enc.transform(TEXTS)  # three new texts: only they are computed
    with FeatureStore(store) as fs:
        assert len(fs) == 8
    np.testing.assert_array_equal(more[:5], X)


def test_pipeline_grid_search_and_clone_share_the_store(models, tmp_path):
    store = tmp_path / "cache.h5"
    pipe = make_pipeline(CachedEncoder(models["text"], store=store), LogisticRegression())
    grid = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0]}, cv=2)
    grid.fit(TEXTS, LABELS)
    assert grid.predict(["the cat sat"]).tolist() in (["cat"], ["dog"])
    with FeatureStore(store) as fs:
        assert len(fs) == len(TEXTS)  # every fold's texts, computed once between them
    twin = clone(pipe)
    assert twin.get_params()["cachedencoder__store"] == store
    assert not hasattr(twin.steps[0][1], "kind_")  # clone copies parameters only


def test_image_paths_and_a_store_of_another_model(models, tmp_path):
    images = write_images(tmp_path / "images", per_class=2)
    paths = sorted(str(p) for p in images.rglob("*.png"))
    store = tmp_path / "img.h5"
    X = CachedEncoder(models["image"], store=store, tap="pool").fit_transform(paths)
    assert X.shape == (4, 4)
    extract(models["image"], images, tmp_path / "ref.h5", taps=("pool",), progress=False)
    with FeatureStore(tmp_path / "ref.h5") as ref:
        np.testing.assert_array_equal(X, ref.features("pool"))
    other = CachedEncoder(models["other"], store=store, tap="pool").fit(paths)
    with pytest.raises(StoreMismatchError, match="different backbone_sha256"):
        other.transform(paths)
    with pytest.raises(UserInputError, match="nope.png: cannot read"):
        CachedEncoder(models["image"], store=store, tap="pool").fit_transform(["nope.png"])


def test_bad_text_commits_nothing(models, tmp_path):
    store = tmp_path / "cache.h5"
    enc = CachedEncoder(models["text"], store=store).fit(TEXTS)
    enc.transform(TEXTS[:2])
    before = store.read_bytes()
    with pytest.raises(UserInputError, match="CachedEncoder input '  ': empty text"):
        enc.transform([TEXTS[3], "  "])
    assert store.read_bytes() == before
    with pytest.raises(UserInputError, match="one string"):
        enc.transform("the cat")
