"""Bench fixtures: small real stores with a fixed test split, and a fit-recording head."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.bench import tasks

MARK = 1000  # column 0 holds row / MARK


def marks(X) -> tuple[int, ...]:
    """The row numbers a feature matrix carries in its column 0."""
    return tuple(np.rint(np.asarray(X)[:, 0] * MARK).astype(int).tolist())


@pytest.fixture(scope="module")
def bench_arrays():
    """240 x 12 float32 features, 4 classes; column 0 holds a row marker (row number / 1000).

    The marker is scaled like the other features: raw row numbers (0..239) made logreg need
    ten times the iterations to converge.
    """
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=240, n_features=12, n_informative=8, n_classes=4, random_state=0
    )
    X = X.astype(np.float32)
    X[:, 0] = np.arange(len(X)) / MARK  # lets a test see exactly which rows a head was given
    splits = np.where(np.arange(len(y)) % 4 == 0, "test", "train")
    return X, y.astype(np.int64), splits


@pytest.fixture
def bench_store(tmp_path, bench_arrays):
    """A real HDF5 store of ``bench_arrays`` with a 75/25 train/test split."""
    from embedkit.rows import from_arrays

    X, y, splits = bench_arrays
    path = tmp_path / "bench.h5"
    from_arrays(path, X, y, label_names=["ant", "bee", "cat", "dog"], splits=splits).close()
    return path


class _Recorder:
    """Wraps a real head; logs the row markers (column 0) of every fit and predict."""

    log: list[tuple[str, str, tuple[int, ...]]] = []

    def __init__(self, name, head):
        self.name, self.head = name, head

    def fit(self, X, y):
        self.log.append((self.name, "fit", marks(X)))
        self.head.fit(X, y)
        self.classes_ = self.head.classes_
        return self

    def predict(self, X):
        self.log.append((self.name, "predict", marks(X)))
        return self.head.predict(X)

    def predict_proba(self, X):
        self.log.append((self.name, "predict", marks(X)))
        return self.head.predict_proba(X)

    def get_params(self, deep=True):
        return self.head.get_params(deep)


@pytest.fixture
def recorded(monkeypatch):
    """Record every head the bench builds (run the bench with jobs=1 so it is in-process)."""
    real = tasks.build_head
    _Recorder.log = []

    def build(name, seed, params=None):
        return _Recorder(name, real(name, seed, params))

    monkeypatch.setattr(tasks, "build_head", build)
    return _Recorder.log
