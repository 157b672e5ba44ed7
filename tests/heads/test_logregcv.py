"""LogRegCVHead: its C comes from folds of its own training rows."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_classification

from embedkit.heads import make_head


def _small_rows(n):
    """Rows of norm 0.1: a penalty of C=1 shrinks their logits to almost nothing."""
    X, y = make_classification(n, 64, n_informative=20, n_classes=4, random_state=0)
    return (0.1 * X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), y


def test_it_picks_a_weak_penalty_for_small_features_and_beats_c1():
    X, y = _small_rows(800)
    cv = make_head("logregcv").fit(X[:600], y[:600])
    assert cv.n_folds_ == 5 and cv.C_ >= 10
    fixed = make_head("logreg").fit(X[:600], y[:600])
    assert cv.score(X[600:], y[600:]) > fixed.score(X[600:], y[600:])


def test_one_row_in_a_class_falls_back_to_c():
    X, y = _small_rows(40)
    y = y.copy()
    y[0] = 9  # a class with a single row: no folds to choose on
    head = make_head("logregcv", C=0.5).fit(X, y)
    assert head.n_folds_ == 1 and head.C_ == 0.5
    assert head.predict_proba(X).shape == (40, 5)


def test_default_grid_steps_by_half_decades_from_001_to_1000():
    """Whole decades miss the C that cross-validation prefers on mpnet fortunes (3: issue 23)."""
    Cs = np.array(make_head("logregcv").Cs)
    assert Cs[0] == 0.01 and Cs[-1] == 1000.0
    assert 3.0 in Cs and np.all(Cs[1:] / Cs[:-1] <= 10 / 3 + 1e-9)  # 1, 3, 10, 30, ...
