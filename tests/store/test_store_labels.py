"""Labels in a store: classes by distinct values, cached rows follow the source's labels."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import UserInputError
from embedkit.rows import from_arrays, split_rows
from embedkit.store import FeatureStore, PendingRows


def test_from_arrays_names_classes_by_distinct_values_not_a_range(tmp_path):
    y = np.array([0, 2_000_000_000, -1, 2_000_000_000])
    with from_arrays(tmp_path / "a.h5", np.zeros((4, 2), np.float32), y) as fs:
        assert fs.label_names == ["0", "2000000000"]
        assert fs.labels().tolist() == [0, 1, -1, 1]


@pytest.mark.parametrize(
    "y, words",
    [
        (np.array([0.5, 1.0]), "row 0"),
        (np.array([[1, 2], "a"], dtype=object), "row 0"),
        (np.array([True, False]), "bool"),
        (np.arange(100_001), "100,001 distinct labels"),
    ],
)
def test_from_arrays_refuses_labels_that_are_not_classes(tmp_path, y, words):
    X = np.zeros((len(y), 2), np.float32)
    with pytest.raises(UserInputError, match=words):
        from_arrays(tmp_path / "a.h5", X, y)
    assert not (tmp_path / "a.h5").exists()


def test_from_arrays_checks_indexes_against_label_names(tmp_path):
    with pytest.raises(UserInputError, match="row 1: label 2 has no name"):
        from_arrays(
            tmp_path / "a.h5", np.zeros((2, 2), np.float32), np.array([0, 2]), label_names=["a"]
        )


@pytest.mark.parametrize("test, val", [(0.5, 0.6), (0.5, 0.5), (1.0, 0.0), (0.2, -0.1)])
def test_split_fractions_must_leave_train_rows(tmp_path, test, val):
    path = tmp_path / "s.h5"
    from_arrays(path, np.zeros((10, 2), np.float32), np.arange(10) % 2).close()
    with FeatureStore(path) as fs, pytest.raises(UserInputError, match="--(test|val)"):
        split_rows(fs, test=test, val=val)


def test_relabel_and_new_rows_land_in_one_commit(tmp_path):
    """Cached rows take their source's labels (None: unlabelled) in the commit of new rows."""
    from embedkit.store import StoreWriter
    from tests.store import _worker as W

    store = tmp_path / "s.h5"
    W.extract(store, 0, 6, 4)  # labels a, b, c, a, b, c
    ids, digests, x, _ = W.rows(0, 8)
    labels = ["a", "d", None, "a", "b", "c", "d", "a"]
    with StoreWriter(store, W.FP) as w:
        todo = w.plan(ids, digests)
        assert todo.tolist() == [6, 7]
        assert w.relabel(ids[:6] + ["nope"], labels[:6] + ["a"]) == 2  # rows 1 and 2
        w.begin(PendingRows([ids[i] for i in todo], 4, digests=[digests[i] for i in todo],
                            labels=[labels[i] for i in todo]))  # fmt: skip
        w.write_batch(0, ids[6:], digests[6:], labels[6:], None, {"pool": x[6:]})
        summary = w.commit()
    assert (summary.n_added, summary.n_relabelled) == (2, 2)
    with FeatureStore(store) as fs:
        assert fs.label_names == ["a", "b", "c", "d"]
        assert [fs.label_names[c] if c >= 0 else None for c in fs.labels()] == labels
        assert W.check(fs) == 0
