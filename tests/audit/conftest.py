"""Fixtures for the audit tests: labelled data with known flipped labels."""

from __future__ import annotations

import numpy as np
import pytest


def flip_labels(y: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(noisy labels, flipped rows)``: ``fraction`` of rows moved to another class."""
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    flipped = np.sort(rng.choice(len(y), int(round(fraction * len(y))), replace=False))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, len(flipped))) % n_classes
    return noisy, flipped


@pytest.fixture(scope="module")
def digits_flipped():
    """scikit-learn digits (1,797 x 64) with 5% of the labels flipped (seed 0)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    noisy, flipped = flip_labels(y.astype(np.int64), 0.05)
    return X.astype(np.float32), noisy, flipped
