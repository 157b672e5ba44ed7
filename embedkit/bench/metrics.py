"""Metrics of one run, and their intervals over seeds.

Each run is scored on the fixed test split (or the held-out fold) with accuracy,
balanced accuracy, macro-F1, log loss and the expected calibration error (ECE). The
aggregate of a (head, shots) cell is the mean over its runs with a two-sided 95%
Student-t interval: ``mean ± t(0.975, n-1) · sd / sqrt(n)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "ece")
TIMES = ("fit_s", "predict_s")
ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017)


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """ECE of the top-class confidence over ``n_bins`` equal-width bins.

    ``ECE = sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|``; a bin holds the rows
    whose top probability lies in ``(lo, hi]``.

    Examples
    --------
    >>> proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> round(expected_calibration_error(np.array([0, 1, 0, 0]), proba), 3)
    0.4
    """
    y_true = np.asarray(y_true)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def score(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int
) -> dict[str, float]:
    """All metrics of one run; log loss and ECE are NaN when the head has no probabilities.

    ``proba`` has one column per class ``0 .. n_classes - 1``. Balanced accuracy is the
    mean recall over the classes present in ``y_true``; macro-F1 averages over the classes
    present in ``y_true`` or ``y_pred`` (as scikit-learn does without ``labels``). Computed
    with numpy from one confusion matrix: sklearn.metrics' argument checks cost more
    than the arithmetic at few-shot sizes.

    Examples
    --------
    >>> y = np.array([0, 1, 1]); p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> m = score(y, p.argmax(1), p, 2)
    >>> round(m["accuracy"], 3), round(m["balanced_accuracy"], 3)
    (0.667, 0.75)
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    confusion = confusion.reshape(n_classes, n_classes)  # (true, predicted)
    hits = np.diag(confusion).astype(float)
    true_n, pred_n = confusion.sum(axis=1), confusion.sum(axis=0)
    present = true_n > 0
    either = present | (pred_n > 0)
    f1 = np.divide(2 * hits, true_n + pred_n, out=np.zeros(n_classes), where=(true_n + pred_n) > 0)
    out = {
        "accuracy": float(hits.sum() / max(1, len(y_true))),
        "balanced_accuracy": float(np.mean(hits[present] / true_n[present])),
        "macro_f1": float(f1[either].mean()),
        "log_loss": math.nan,
        "ece": math.nan,
    }
    if proba is not None:
        proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1.0)
        proba = proba / proba.sum(axis=1, keepdims=True)
        out["log_loss"] = float(-np.mean(np.log(proba[np.arange(len(y_true)), y_true])))
        out["ece"] = expected_calibration_error(y_true, proba)
    return out


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval ``(mean, low, high)``; NaNs are dropped.

    One value gives an interval of NaN (no spread to estimate); no values give all NaN.

    Examples
    --------
    >>> mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    >>> mean, round(hi - mean, 4)   # t(0.975, 2) = 4.3027, sd/sqrt(3) = 0.5774
    (2.0, 2.4841)
    """
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half
