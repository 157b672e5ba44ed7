"""k-shot sampling, cv folds and the sweep's validation split touch only training rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.bench import BenchData, BenchSpec, load_bench_data, run_bench
from embedkit.bench.data import carve_validation, cv_folds, kshot_indices
from embedkit.bench.runner import plan


@pytest.fixture(scope="module")
def data(bench_arrays):
    X, y, splits = bench_arrays
    rows = np.arange(len(y))
    return BenchData(X, y, rows[splits == "train"], rows[splits == "test"])


@pytest.mark.parametrize("k", [1, 3, 8])
def test_kshot_is_stratified_and_deterministic_per_seed(data, k):
    a = kshot_indices(data.y, data.train, k, seed=3)
    b = kshot_indices(data.y, data.train, k, seed=3)
    c = kshot_indices(data.y, data.train, k, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.bincount(data.y[a], minlength=4).tolist() == [k] * 4
    assert len(np.unique(a)) == len(a)


def test_kshot_sets_are_nested_and_all_is_the_pool(data):
    small = set(kshot_indices(data.y, data.train, 2, seed=0))
    large = set(kshot_indices(data.y, data.train, 8, seed=0))
    assert small < large
    np.testing.assert_array_equal(kshot_indices(data.y, data.train, "all", seed=0), data.train)


def test_no_planned_run_trains_on_a_test_row(data):
    spec = BenchSpec(heads=("logreg", "knn"), shots=(1, 4, "all"), seeds=3)
    tasks = plan([data], spec)
    assert len(tasks) == spec.n_runs == 18
    test = set(data.test)
    for task in tasks:
        assert not test & set(task.train), task.run_id
        if task.val is not None:  # the validation part is carved from the training rows
            assert set(np.concatenate(task.val)) == set(task.train), task.run_id
        np.testing.assert_array_equal(task.evaluate, data.test)  # ONE fixed test split


def test_cv_folds_partition_the_pool_stratified(data):
    folds = cv_folds(data.y, data.train, 3, seed=0)
    held = np.concatenate([te for _, te in folds])
    np.testing.assert_array_equal(np.sort(held), data.train)
    for tr, te in folds:
        assert not set(tr) & set(te)
        counts = np.bincount(data.y[te], minlength=4)
        assert counts.max() - counts.min() <= 2


def test_carve_validation_splits_only_the_given_rows(data):
    rows = kshot_indices(data.y, data.train, 4, seed=1)
    fit, val = carve_validation(data.y, rows, seed=1)
    assert set(fit) | set(val) == set(rows) and not set(fit) & set(val)
    assert np.bincount(data.y[val], minlength=4).tolist() == [1] * 4
    assert carve_validation(data.y, kshot_indices(data.y, data.train, 1, seed=1), seed=1) is None


def test_sweep_never_sees_test_rows(bench_store, recorded, tmp_path):
    data = load_bench_data(bench_store)
    test = set(data.test.tolist())  # the row markers are the row numbers
    run_bench(
        data, out=tmp_path / "out", heads="logreg,centroid", shots="4,all", seeds=1, sweep=True,
        jobs=1, plots=False,
    )  # fmt: skip
    fits = [rows for _, kind, rows in recorded if kind == "fit"]
    predicts = [rows for _, kind, rows in recorded if kind == "predict"]
    # logreg: 5 values of C, then the refit, per run; centroid has no grid: one fit per run;
    # at shots = all the validation fit repeats the whole procedure on its own rows
    assert len(fits) == 3 * (5 + 1) + 3
    assert all(not test & set(rows) for rows in fits)
    on_test = [rows for rows in predicts if set(rows) & test]
    assert len(on_test) == 4 and all(set(rows) == test for rows in on_test)  # scoring only
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")]
    sweeps = {r["run_id"]: r["sweep"] for r in records}
    logreg = sweeps["features__logreg__k4__s0"]
    assert logreg["n_fit"] + logreg["n_val"] == 16
    assert sweeps["features__centroid__k4__s0"]["skipped"] == "no sweep grid for this head"
