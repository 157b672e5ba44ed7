"""Metrics and intervals on cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedkit.bench.metrics import expected_calibration_error, score, t_interval


def test_t_interval_matches_the_textbook_case():
    # mean 10, n = 4: half-width = t(0.975, 3) * sd / sqrt(4), t(0.975, 3) = 3.182446
    mean, lo, hi = t_interval([8, 9, 11, 12])
    sd = np.std([8, 9, 11, 12], ddof=1)
    assert mean == 10.0
    assert hi - mean == pytest.approx(3.182446305 * sd / 2, rel=1e-6)
    assert mean - lo == pytest.approx(hi - mean)


def test_t_interval_covers_the_mean_at_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        _, lo, hi = t_interval(rng.normal(1.0, 3.0, size=5))
        hits += lo <= 1.0 <= hi
    assert 0.93 < hits / 2000 < 0.97


def test_t_interval_edge_cases():
    assert t_interval([0.5])[0] == 0.5 and math.isnan(t_interval([0.5])[1])
    assert all(math.isnan(v) for v in t_interval([]))
    assert t_interval([1.0, float("nan"), 3.0])[0] == 2.0  # NaN (a failed metric) dropped
    mean, lo, hi = t_interval([0.7, 0.7, 0.7])
    assert (lo, hi) == pytest.approx((0.7, 0.7))


def test_ece_on_a_hand_computed_case():
    # bin (0.8, 0.867]: conf 0.85 x2, accuracy 1/2 -> gap 0.35; bin (0.6, 0.667]: conf 0.65 x2,
    # accuracy 2/2 -> gap 0.35; ECE = 0.5 * 0.35 + 0.5 * 0.35
    proba = np.array([[0.85, 0.15], [0.85, 0.15], [0.35, 0.65], [0.35, 0.65]])
    assert expected_calibration_error(np.array([0, 1, 1, 1]), proba) == pytest.approx(0.35)


def test_ece_is_zero_when_calibrated_and_large_when_overconfident():
    y = np.array([0, 0, 0, 1])  # 75% right at confidence 0.75
    calibrated = np.tile([0.75, 0.25], (4, 1))
    assert expected_calibration_error(y, calibrated) == pytest.approx(0.0)
    overconfident = np.tile([0.99, 0.01], (4, 1))
    assert expected_calibration_error(y, overconfident) == pytest.approx(0.24)


def test_score_on_a_known_case():
    y = np.array([0, 0, 1, 2])
    proba = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    m = score(y, proba.argmax(1), proba, 3)
    assert m["accuracy"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.4, 0.8, 0.6])))
    no_proba = score(y, proba.argmax(1), None, 3)
    assert math.isnan(no_proba["log_loss"]) and math.isnan(no_proba["ece"])


def test_score_agrees_with_sklearn_on_random_predictions():
    from sklearn import metrics

    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    proba = rng.dirichlet(np.ones(5), 300)
    pred = np.where(rng.random(300) < 0.5, y, proba.argmax(1))
    m = score(y, pred, proba, 5)
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert m["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=range(5)))
