"""Shared data for the heads tests: small real datasets, float32 like cached features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification


@pytest.fixture(scope="module")
def tiny():
    """300 rows x 16 features, 3 classes, split 200 train / 100 test."""
    X, y = make_classification(
        300, 16, n_informative=8, n_classes=3, n_clusters_per_class=1, random_state=0
    )
    X = X.astype(np.float32)
    return X[:200], y[:200], X[200:], y[200:]


# Short schedules for torch heads in tests (the defaults are sized for real data).
FAST_TORCH = {"max_epochs": 30, "lr": 3e-2, "batch_size": 128}
