"""Semi-supervised heads: they use the unlabelled rows, and deploy without the graph."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from embedkit.errors import UserInputError
from embedkit.heads import load_head, make_head, save_head
from embedkit.heads._semi import ALPHAS
from tests.helpers import cli


@pytest.fixture(scope="module")
def few_labels():
    X, y = make_blobs(600, 12, centers=4, cluster_std=6.0, random_state=3)
    X = X.astype(np.float32)
    rng = np.random.default_rng(0)
    given = np.concatenate([rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in range(4)])
    y_few = np.full(len(y), -1)
    y_few[given] = y[given]
    return X, y, y_few, given


@pytest.mark.parametrize("name", ["spread", "selftrain"])
def test_unlabelled_rows_help(few_labels, name):
    X, y, y_few, given = few_labels
    alone = make_head("logreg").fit(X[given], y[given]).score(X, y)
    semi = make_head(name, random_state=0).fit(X, y_few)
    assert semi.score(X, y) >= alone
    assert list(semi.classes_) == [0, 1, 2, 3] == list(semi.head_.classes_)


def test_spreading_beats_the_labelled_rows_alone(few_labels):
    X, y, y_few, given = few_labels
    alone = make_head("logreg").fit(X[given], y[given]).score(X, y)
    assert make_head("spread", random_state=0).fit(X, y_few).score(X, y) > alone + 0.1


def test_string_labels_and_a_bad_base(few_labels):
    X, y, _, _ = few_labels
    names = np.array(["a", "b", "c", "d"])[y]
    assert set(make_head("spread").fit(X, names).predict(X[:5])) <= set("abcd")
    with pytest.raises(UserInputError, match="base='mlp' is invalid"):
        make_head("spread", base="mlp").fit(X, y)
    with pytest.raises(UserInputError, match="fewer than two classes|2 classes|one class"):
        make_head("selftrain").fit(X, np.where(np.arange(len(y)) < 5, 0, -1))


def test_saved_head_deploys_as_onnx_without_the_graph(few_labels, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from embedkit.deploy import head_to_onnx

    X, _, y_few, _ = few_labels
    head = load_head(save_head(make_head("spread", random_state=0).fit(X, y_few), tmp_path / "h"))
    model = head_to_onnx(head, (X.shape[1],))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    proba, label = session.run(["probabilities", "label"], {"features": X})
    assert np.abs(proba - head.predict_proba(X)).max() < 1e-5
    assert (head.classes_[label] == head.predict(X)).all()


def test_train_cli_feeds_the_unlabelled_train_rows(few_labels, tmp_path, capsys):
    from embedkit.rows import from_arrays

    X, y, y_few, _ = few_labels
    splits = np.where(np.arange(len(y)) % 5 == 0, "test", "train")
    labels = np.where(splits == "test", y, y_few)  # test fully labelled, train 8 labels
    store = tmp_path / "s.h5"
    from_arrays(store, X, labels, splits=splits).close()
    for name in ("logreg", "spread"):
        done = cli(capsys, "train", store, "--head", name, "--val", "0", "--out", tmp_path / name)
        assert done.returncode == 0, done.stderr
    info = {n: json.loads((tmp_path / n / "train.json").read_text()) for n in ("logreg", "spread")}
    assert info["spread"]["rows"]["train"] == int((splits == "train").sum())  # unlabelled too
    assert info["logreg"]["rows"]["train"] == int(((splits == "train") & (y_few >= 0)).sum())
    assert info["spread"]["accuracy"]["test"] > info["logreg"]["accuracy"]["test"]
    assert info["spread"]["labels_sha256"] == info["logreg"]["labels_sha256"]


def test_graph_auto_measures_and_can_refuse_to_spread():
    """graph='auto' keeps the choice its cross-validation scored best; 'none' is logreg alone."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)).astype(np.float32)  # noise: spreading buys nothing
    y = (X[:, 0] > 0).astype(int)  # a linear rule the labelled rows alone learn
    y_few = np.full(300, -1)
    y_few[:40] = y[:40]
    head = make_head("spread", random_state=0).fit(X, y_few)
    spreads = {f"{g}@{a}{b}" for g in ("centre", "whiten") for a in ("0.9", "0.99")
               for b in ("", "+uniform", "+labelled")}  # fmt: skip
    assert set(head.graph_scores_) == spreads | {"none"}
    assert head.graph_scores_[head._name(head.graph_, head.alpha_, head.balance_)] == max(
        head.graph_scores_.values()
    )
    alone = make_head("spread", graph="none", random_state=0).fit(X, y_few)
    assert alone.n_spread_ == 0 and alone.graph_ == "none"
    direct = make_head("logreg", random_state=0).fit(X[:40], y[:40])
    assert np.allclose(alone.predict_proba(X), direct.predict_proba(X))


def test_a_shared_graph_changes_no_prediction(few_labels):
    """Fits on one pool share its memoised graphs: the same predictions as a fresh build."""
    from embedkit.heads.graph import clear_memo, knn_graph, memo_info, unit_rows

    X, y, _, _ = few_labels
    rng = np.random.default_rng(1)
    first, second = np.full(len(y), -1), np.full(len(y), -1)
    for labels in (first, second):  # 5 per class: graph="auto" scores both graphs
        given = np.concatenate([rng.choice(np.flatnonzero(y == c), 5, replace=False)
                                for c in range(4)])  # fmt: skip
        labels[given] = y[given]
    clear_memo()
    fresh = make_head("spread", random_state=0).fit(X, second)
    clear_memo()
    make_head("spread", random_state=1).fit(X, first)  # builds the pool's two graphs
    shared = make_head("spread", random_state=0).fit(X, second)  # reuses them
    assert memo_info() == {"hits": 2, "misses": 2, "items": 2}
    assert {"centre@0.9", "whiten@0.99", "none"} <= set(shared.graph_scores_)
    assert shared.graph_scores_ == fresh.graph_scores_ and shared.graph_ == fresh.graph_
    assert np.array_equal(shared.predict_proba(X), fresh.predict_proba(X))
    assert np.array_equal(shared.predict(X), fresh.predict(X))
    rows = rng.permutation(len(X))  # a fit's rows in any order get the pool's graph, permuted
    direct = knn_graph(unit_rows(X[rows], center=True), 10)
    assert abs(shared._graph(X, rows, "centre") - direct).max() < 1e-5


def test_balance_shares_the_spread_labels_among_classes():
    """One seed per class of four equal blobs: spreading alone floods some classes;
    balance='uniform' brings every class nearer its quarter of the rows."""
    X, y = make_blobs(600, 12, centers=4, cluster_std=6.0, random_state=3)
    rng = np.random.default_rng(2)
    given = [rng.choice(np.flatnonzero(y == c)) for c in range(4)]
    y_few = np.full(len(y), -1)
    y_few[given] = y[given]
    fits = {b: make_head("spread", graph="centre", balance=b, alpha=0.9,
                         random_state=0).fit(X, y_few) for b in ("none", "uniform")}  # fmt: skip
    off = {b: np.abs(np.bincount(h.predict(X), minlength=4) - 150).max() for b, h in fits.items()}
    assert off["uniform"] < off["none"]
    assert fits["uniform"].score(X, y) > fits["none"].score(X, y)
    assert fits["uniform"].balance_ == "uniform" and fits["uniform"].graph_scores_ == {}


def test_alpha_auto_keeps_the_reach_its_cross_validation_scored_best(few_labels):
    """alpha='auto' scores 0.9 and 0.99 on the same folds and fits with the better."""
    X, _, y_few, _ = few_labels
    fixed = {"graph": "centre", "balance": "none", "random_state": 0}
    head = make_head("spread", **fixed).fit(X, y_few)
    assert set(head.graph_scores_) == {"centre@0.9", "centre@0.99"}
    best = max(ALPHAS, key=lambda a: (head.graph_scores_[f"centre@{a:g}"], -a))
    assert head.alpha_ == best
    same = make_head("spread", alpha=best, **fixed).fit(X, y_few)
    assert np.array_equal(head.predict_proba(X), same.predict_proba(X))
    assert same.graph_scores_ == {} and same.alpha_ == best


def test_balance_scores_meets_the_class_shares():
    from embedkit.heads._semi import balance_scores

    F = np.random.default_rng(0).dirichlet(np.ones(3) * 0.3, size=200)  # (200, 3) rows sum 1
    for balance, share in (("uniform", [1 / 3] * 3), ("labelled", [3 / 8, 2 / 8, 3 / 8])):
        Q = balance_scores(F, balance, np.array([0, 0, 1, 2, 2]))
        assert np.allclose(Q.sum(1), 1)
        assert np.allclose(Q.sum(0), 200 * np.array(share), rtol=0.02)
    assert balance_scores(F, "none", np.array([0])) is F


def test_auto_can_skip_the_graph_choice_for_a_class_of_two_labels(few_labels):
    """Under min_cv_labels labels in a class the folds are noise: auto takes centre."""
    X, _, y_few, _ = few_labels  # 2 labels per class
    head = make_head("spread", min_cv_labels=3, random_state=0).fit(X, y_few)
    assert head.graph_ == "centre" and {k.split("@")[0] for k in head.graph_scores_} == {"centre"}
    fixed = make_head("spread", graph="centre", random_state=0).fit(X, y_few)
    assert np.array_equal(head.predict_proba(X), fixed.predict_proba(X))
    always = make_head("spread", random_state=0).fit(X, y_few)
    assert {"centre@0.9", "whiten@0.9", "none"} <= set(always.graph_scores_)
