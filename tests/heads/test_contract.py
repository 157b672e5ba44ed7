"""The scikit-learn contract: clone, Pipeline, GridSearchCV, errors, partial_fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedkit.errors import NotFittedError, UserInputError
from embedkit.heads import HEADS, TORCH_HEADS, make_head
from tests.heads.conftest import FAST_TORCH


def _params(name):
    return dict(FAST_TORCH) if name in TORCH_HEADS else {}


@pytest.mark.parametrize("name", HEADS)
def test_every_head_fits_predicts_and_clones(name, tiny):
    X, y, Xte, yte = tiny
    head = make_head(name, random_state=0, **_params(name))
    twin = clone(head)
    assert twin.get_params() == head.get_params()
    head.fit(X, y)
    proba = head.predict_proba(Xte)
    assert proba.shape == (len(Xte), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert np.array_equal(head.predict(Xte), head.classes_[proba.argmax(1)])
    assert head.score(Xte, yte) > 0.6, name
    assert not hasattr(clone(head), "classes_")  # clone drops the learned state


@pytest.mark.parametrize("name", ["sgd", "ridge", "linear"])
def test_pipeline_and_grid_search(name, tiny):
    X, y, Xte, yte = tiny
    key, values = {
        "sgd": ("alpha", [1e-4, 1e-2]),
        "ridge": ("alpha", [0.1, 10.0]),
        "linear": ("weight_decay", [0.0, 1e-2]),
    }[name]
    pipe = make_pipeline(StandardScaler(), make_head(name, random_state=0, **_params(name)))
    grid = GridSearchCV(pipe, {f"{pipe.steps[-1][0]}__{key}": values}, cv=3).fit(X, y)
    assert grid.best_estimator_.score(Xte, yte) > 0.6
    assert len(grid.cv_results_["mean_test_score"]) == 2


@pytest.mark.parametrize("name", ["sgd", "centroid", "mlp"])
def test_not_fitted_error_is_embedkits_and_sklearns(name, tiny):
    with pytest.raises(NotFittedError, match="not fitted yet") as info:
        make_head(name).predict(tiny[0])
    assert isinstance(info.value, SklearnNotFittedError)


def test_make_head_names_valid_options():
    with pytest.raises(UserInputError, match="unknown head 'resnet'; known: ") as info:
        make_head("resnet")
    known = str(info.value).split("known: ")[1].split(", ")
    assert set(known) == set(HEADS)  # every registered head is offered, nothing else
    with pytest.raises(UserInputError, match="valid: .*alpha"):
        make_head("ridge", C=1.0)


@pytest.mark.parametrize("name", ["sgd", "linear", "mlp"])
def test_partial_fit_needs_classes_then_same_dimension(name, tiny):
    X, y, Xte, yte = tiny
    head = make_head(name, random_state=0)
    with pytest.raises(UserInputError, match="classes must be passed on the first call"):
        head.partial_fit(X[:50], y[:50])
    for _ in range(20):
        for lo in range(0, len(X), 50):
            head.partial_fit(X[lo : lo + 50], y[lo : lo + 50], classes=[0, 1, 2])
    assert head.score(Xte, yte) > 0.6
    with pytest.raises(UserInputError, match="X has 8 features, but .* expecting 16"):
        head.partial_fit(X[:50, :8], y[:50])


def test_sgd_hinge_and_modified_huber_have_probabilities(tiny):
    X, y, Xte, _ = tiny
    for loss in ("hinge", "modified_huber"):
        head = make_head("sgd", loss=loss, random_state=0).fit(X, y)
        proba = head.predict_proba(Xte)
        np.testing.assert_allclose(proba.sum(1), 1.0)
        assert head.temperature_ > 0
    with pytest.raises(UserInputError, match="log_loss"):
        make_head("sgd", loss="perceptron").fit(X, y)


def test_sgd_stops_early_on_big_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 32)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(int)
    head = make_head("sgd", random_state=0).fit(X, y)
    assert head.n_iter_ < head.max_iter  # early stopping ended it


def test_sklearn_heads_import_fit_save_and_load_without_torch(tmp_path):
    """skops walks every sklearn package when imported (torch's adapter included)."""
    import subprocess
    import sys

    code = (
        "import sys; from embedkit.heads import make_head, save_head, load_head, fit_store; "
        "import numpy as np; X = np.random.default_rng(0).normal(size=(40, 4)); "
        "head = make_head('sgd').fit(X, X[:, 0] > 0); "
        f"back = load_head(save_head(head, {str(tmp_path / 'head')!r})); "
        "assert (back.predict(X) == head.predict(X)).all(); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
