"""Confident learning finds flipped labels; the confident joint is computed as defined."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from embedkit.audit import audit_arrays, find_label_issues, out_of_fold_proba
from embedkit.errors import UserInputError

from .conftest import flip_labels


def _precision_recall_at(ranking: np.ndarray, flipped: np.ndarray) -> tuple[float, float]:
    top = ranking[: len(flipped)]
    hits = np.isin(top, flipped).sum()
    return hits / len(top), hits / len(flipped)


def test_flipped_blobs_are_found_at_top_k():
    X, y = make_blobs(600, centers=5, n_features=16, cluster_std=3.0, random_state=0)
    noisy, flipped = flip_labels(y, 0.05)
    report = audit_arrays(X.astype(np.float32), noisy, folds=3)
    precision, recall = _precision_recall_at(report.suspect_rows(len(flipped)), flipped)
    assert precision >= 0.9, precision  # chance is 0.05
    issues = report.labelled[report.issues.is_issue]
    assert np.isin(flipped, issues).mean() >= 0.8
    assert np.isin(issues, flipped).mean() >= 0.8
    assert 0.03 <= report.issues.noise_rate <= 0.08  # 5% flipped


def test_flipped_digits_found_far_above_chance(digits_flipped):
    X, noisy, flipped = digits_flipped
    report = audit_arrays(X, noisy, folds=3)
    for by in ("self_confidence", "margin"):
        precision, _ = _precision_recall_at(report.issues.ranking(by), flipped)
        assert precision >= 0.6, (by, precision)  # measured 0.84 / 0.76; chance 0.05
    # suggested labels mostly restore the true class of the flipped items
    from sklearn.datasets import load_digits

    truth = load_digits().target
    top = report.suspect_rows(len(flipped))
    hit = top[np.isin(top, flipped)]
    position = np.searchsorted(report.labelled, hit)
    assert (report.issues.suggested[position] == truth[hit]).mean() >= 0.8


def test_confident_joint_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    p = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.8, 0.1, 0.1],
            [0.7, 0.2, 0.1],
            [0.1, 0.85, 0.05],  # labelled 0, confidently 1: an issue
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],  # 0.7 < class 1's threshold 0.75: not counted
            [0.1, 0.75, 0.15],
            [0.1, 0.1, 0.8],
            [0.05, 0.05, 0.9],
            [0.4, 0.3, 0.3],  # labelled 2, below every threshold: not counted
        ]
    )
    found = find_label_issues(y, p)
    # thresholds = mean self-confidence per class
    np.testing.assert_allclose(
        found.thresholds, [(0.9 + 0.8 + 0.7 + 0.1) / 4, 0.75, (0.8 + 0.9 + 0.3) / 3]
    )
    np.testing.assert_array_equal(found.confident_joint, [[3, 1, 0], [0, 2, 0], [0, 0, 2]])
    assert found.is_issue.tolist() == [False, False, False, True] + [False] * 6
    # calibrated to the class counts (4, 3, 3) and normalised
    np.testing.assert_allclose(found.noise_joint.sum(axis=1), [0.4, 0.3, 0.3])
    assert found.noise_rate == pytest.approx(0.1)
    np.testing.assert_allclose(found.class_noise_rate, [0.25, 0.0, 0.0])
    np.testing.assert_allclose(found.margin[3], (0.1 - 0.85 + 1) / 2)
    assert found.ranking("self_confidence")[0] == 3


def test_out_of_fold_never_sees_its_own_label():
    # pure-noise features: a head that saw the labels would be confident; out of fold it is not
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    proba = out_of_fold_proba(X, y, folds=3)
    assert proba.shape == (300, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert (proba.argmax(1) == y).mean() < 0.45


def test_out_of_fold_keeps_empty_classes_as_zero_columns():
    X, y = make_blobs(90, centers=3, random_state=0)
    proba = out_of_fold_proba(X, np.where(y == 2, 3, y), n_classes=5, folds=3)
    assert proba.shape == (90, 5)
    assert not proba[:, [2, 4]].any()


def test_too_few_items_per_class_says_what_to_do():
    X, y = make_blobs(40, centers=2, random_state=0)
    y[:2] = 2  # class 2 has two items
    with pytest.raises(UserInputError, match="class 2 has 2 labelled items.*lower --folds"):
        out_of_fold_proba(X, y, folds=3)
    with pytest.raises(UserInputError, match="unknown head 'nope'.*logreg"):
        out_of_fold_proba(X, y, folds=2, head="nope")


def test_string_labels_and_unlabelled_rows():
    X, y = make_blobs(150, centers=3, n_features=4, random_state=0)
    names = np.array(["cat", "dog", "owl"])[y].astype(object)
    names[:10] = ""  # unlabelled: in the neighbour pass only
    report = audit_arrays(X, names, folds=3)
    assert report.label_names == ["cat", "dog", "owl"]
    assert len(report.labelled) == 140 and (report.labels[:10] == -1).all()
    assert report.scan.outlier_score.shape == (150,)


def test_non_finite_features_are_named():
    X, y = make_blobs(30, centers=2, random_state=0)
    X[7, 1] = np.nan
    with pytest.raises(UserInputError, match="1 items have NaN.*first: item7"):
        audit_arrays(X, y, ids=[f"item{i}" for i in range(30)], folds=2)
