"""Class balance: counts, imbalance ratio, per-class out-of-fold accuracy, confusions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassBalance:
    """Counts and out-of-fold accuracy per class."""

    counts: np.ndarray  # (K,) int64: labelled items per class
    imbalance_ratio: float  # largest count over the smallest (inf if a class is empty)
    accuracy: np.ndarray  # (K,) out-of-fold accuracy per given class (nan for an empty class)
    confusion: np.ndarray  # (K, K) int64 counts of (given label, out-of-fold prediction)

    @property
    def empty_classes(self) -> list[int]:
        """Classes that have no labelled item."""
        return [int(c) for c in np.flatnonzero(self.counts == 0)]

    def top_confusions(self, n: int = 10) -> list[tuple[int, int, int]]:
        """The ``n`` largest off-diagonal cells as ``(given, predicted, count)``."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        flat = np.argsort(-off, axis=None, kind="stable")[:n]
        cells = [np.unravel_index(i, off.shape) for i in flat]
        return [(int(g), int(p), int(off[g, p])) for g, p in cells if off[g, p] > 0]


def class_balance(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> ClassBalance:
    """Summarise class balance and how well each class is predicted out of fold.

    Examples
    --------
    >>> b = class_balance(np.array([0, 0, 0, 1]), np.array([0, 1, 0, 1]), 2)
    >>> b.counts.tolist(), b.imbalance_ratio, b.accuracy.tolist()
    ([3, 1], 3.0, [0.6666666666666666, 1.0])
    """
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    empty = not len(counts) or (counts == 0).any()
    ratio = float("inf") if empty else float(counts.max() / counts.min())
    accuracy = np.full(n_classes, np.nan)
    np.divide(np.diag(confusion), counts, out=accuracy, where=counts > 0)
    return ClassBalance(counts, ratio, accuracy, confusion)
