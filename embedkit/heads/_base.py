"""Shared helpers for heads: fitted-state checks, label encoding, softmax probabilities.

Every head ends its learned state in ``_`` and raises
:class:`embedkit.errors.NotFittedError` before ``fit``; heads without native
probabilities calibrate a softmax over ``decision_function`` with one temperature
fitted on the training scores.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from embedkit.errors import NotFittedError, UserInputError


def check_fitted(head: object, attribute: str = "classes_") -> None:
    """Raise :class:`NotFittedError` naming the head when ``attribute`` is not set yet."""
    if not hasattr(head, attribute):
        name = type(head).__name__
        raise NotFittedError(f"{name} is not fitted yet; call {name}.fit(X, y) before using it")


def encode_labels(
    y: np.ndarray, classes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, y_index)`` for classification targets ``y``.

    Raises :class:`UserInputError` when ``y`` holds fewer than two classes or labels
    outside ``classes``.
    """
    check_classification_targets(y)
    if classes is None:
        classes = np.unique(y)
    if len(classes) < 2:
        raise UserInputError(
            f"y has {len(classes)} class ({classes!r}); a classifier needs at least 2 classes"
        )
    index = np.searchsorted(classes, y)
    index = np.clip(index, 0, len(classes) - 1)
    unknown = classes[index] != y
    if np.any(unknown):
        raise UserInputError(
            f"y holds labels not in classes: {np.unique(np.asarray(y)[unknown])[:5]!r}; "
            f"pass all classes ({len(classes)} known) on the first partial_fit call"
        )
    return np.asarray(classes), index.astype(np.int64)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``scores`` (N, K), computed stably in float64."""
    z = np.asarray(scores, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def two_columns(scores: np.ndarray) -> np.ndarray:
    """Turn a binary decision function (N,) into (N, 2) scores for the softmax."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return np.stack([-scores / 2, scores / 2], axis=1)
    return scores


def fit_temperature(scores: np.ndarray, y_index: np.ndarray) -> float:
    """Fit the softmax temperature ``T`` minimising the log loss of ``scores / T``.

    A one-dimensional search over ``log T`` in [1e-3, 1e3]; it takes milliseconds.
    """
    from scipy.optimize import minimize_scalar

    scores = two_columns(scores)
    rows = np.arange(len(y_index))

    def nll(log_t: float) -> float:
        p = softmax(scores / np.exp(log_t))
        return float(-np.mean(np.log(p[rows, y_index] + 1e-12)))

    result = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return float(np.exp(result.x))
