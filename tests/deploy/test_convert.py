"""Heads as ONNX graphs: the same probabilities as predict_proba, in a real ORT session."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.deploy import head_to_onnx
from embedkit.errors import UserInputError
from embedkit.heads import TORCH_HEADS, make_head
from embedkit.heads.registry import RECORDS

ort = pytest.importorskip("onnxruntime")

SMALL = {"mlp": {"hidden": 16}, "attnpool": {"heads": 2, "dim": 8}}  # else the defaults
# Every registered head, then the options that change its graph.
CASES = [(r.name, SMALL.get(r.name, {})) for r in RECORDS]
CASES += [
    ("sgd", {"loss": "hinge"}),
    ("sgd", {"loss": "modified_huber"}),
    ("knn", {"weights": "uniform"}),
    ("centroid", {"metric": "euclidean"}),
]


def _run(model, X):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["probabilities", "label"], {"features": X})


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_every_registered_head_converts_to_its_probabilities(name, params, n_classes):
    if name in TORCH_HEADS:
        pytest.importorskip("torch")
    from sklearn.datasets import make_classification

    X, y = make_classification(400, 8, n_informative=5, n_classes=n_classes, random_state=n_classes)
    X = X.astype(np.float32)
    head = make_head(name, random_state=0, **params).fit(X[:300], y[:300])
    proba, label = _run(head_to_onnx(head, (8,)), X[300:])
    expected = head.predict_proba(X[300:])
    assert proba.shape == expected.shape and proba.dtype == np.float32
    assert np.abs(proba - expected).max() < 1e-5
    assert np.array_equal(label, expected.argmax(1))


def test_attnpool_takes_the_feature_map_shape():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4, 3, 3)).astype(np.float32)
    y = (X[:, 0].mean((1, 2)) > 0).astype(int)
    head = make_head("attnpool", heads=2, dim=8, random_state=0).fit(X[:100], y[:100])
    proba, _ = _run(head_to_onnx(head, (4, 3, 3)), X[100:])
    assert np.abs(proba - head.predict_proba(X[100:])).max() < 1e-5


def test_a_head_that_cannot_convert_says_so_in_one_line(tiny_data):
    X, y = tiny_data
    head = make_head("knn", metric="euclidean").fit(X, y)
    with pytest.raises(UserInputError, match="cannot convert a KNNHead with metric='euclidean'"):
        head_to_onnx(head, (X.shape[1],))
    with pytest.raises(UserInputError, match="cannot convert a str"):
        head_to_onnx("not a head", (4,))
