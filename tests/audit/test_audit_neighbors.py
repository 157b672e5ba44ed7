"""The blocked scan finds exactly the brute-force duplicates and neighbours, in bounded tiles."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from embedkit.audit import audit_arrays, brute_force_scan, neighbor_scan
from embedkit.errors import UserInputError


@pytest.fixture(scope="module")
def planted():
    """250 random items + 3 exact copies and 3 near copies (one across train/test)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(250, 32)).astype(np.float32)
    exact = [(3, 250), (40, 251), (77, 252)]
    near = [(10, 253), (120, 254), (200, 255)]
    extra = [X[a] for a, _ in exact] + [X[a] + 0.02 * rng.normal(size=32) for a, _ in near]
    X = np.vstack([X, np.array(extra, np.float32)])  # (256, 32)
    splits = np.array(["train"] * len(X), dtype=object)
    splits[255] = "test"  # its original, row 200, is in train: leakage
    return X, splits, exact + near


@pytest.mark.parametrize("block_size", [7, 64, 255, 1000])  # tiny, uneven, n - 1, one tile
def test_blocked_equals_brute_force_for_any_tile_size(planted, block_size):
    X, _, pairs = planted
    blocked = neighbor_scan(X, threshold=0.9, k=5, block_size=block_size)
    brute = brute_force_scan(X, threshold=0.9, k=5)
    np.testing.assert_array_equal(blocked.pairs, brute.pairs)
    np.testing.assert_allclose(blocked.similarity, brute.similarity, atol=1e-5)
    np.testing.assert_allclose(blocked.knn_similarity, brute.knn_similarity, atol=1e-5)
    np.testing.assert_allclose(blocked.outlier_score, brute.outlier_score, atol=1e-5)
    assert {tuple(p) for p in blocked.pairs} == set(pairs)  # exactly the planted pairs
    exact_sim = blocked.similarity[:3]
    assert exact_sim.min() > 0.9999


def test_a_scan_holds_one_tile_of_similarities_not_the_whole_matrix():
    X = np.random.default_rng(1).normal(size=(1500, 8)).astype(np.float32)
    tracemalloc.start()
    try:
        neighbor_scan(X, threshold=0.99, k=5, block_size=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1500 * 1500 * 4 / 4, peak  # the full matrix is 9 MB; 100-row tiles, 40 KB


def test_nearest_neighbours_match_brute_force_on_random_data():
    X = np.random.default_rng(1).normal(size=(301, 16))
    blocked = neighbor_scan(X, k=4, block_size=50)
    brute = brute_force_scan(X, k=4)
    np.testing.assert_array_equal(blocked.knn_index, brute.knn_index)
    assert not (blocked.knn_index == np.arange(301)[:, None]).any()  # never itself


def test_cross_split_duplicates_are_flagged(planted):
    X, splits, _ = planted
    y = np.zeros(len(X), dtype=np.int64)
    y[::2] = 1
    report = audit_arrays(X, y, splits=splits, dup_threshold=0.9, block_size=16, folds=2)
    rows = report.duplicates_table()
    leaks = [r for r in rows if r["cross_split"]]
    assert [(r["id_a"], r["id_b"], r["split_a"], r["split_b"]) for r in leaks] == [
        ("200", "255", "train", "test")
    ]
    assert report.summary()["duplicates"]["n_cross_split"] == 1
    assert len(rows) == 6 and rows[0]["similarity"] >= rows[-1]["similarity"]


def test_far_points_rank_as_top_outliers():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(300, centers=5, n_features=32, cluster_std=2.0, random_state=0)
    far = np.random.default_rng(0).normal(scale=10.0, size=(4, 32))  # directions of no cluster
    X = np.vstack([X[:150], far, X[150:]])  # planted at rows 150..153
    scan = neighbor_scan(X, k=5, block_size=32)
    top = np.argsort(-scan.outlier_score)[:4]
    assert sorted(top.tolist()) == [150, 151, 152, 153]


def test_max_pairs_keeps_the_most_similar():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 8))
    X = base + np.linspace(0, 0.05, 40)[:, None] * rng.normal(size=(40, 8))  # all similar
    full = brute_force_scan(X, threshold=0.9, k=1)
    capped = neighbor_scan(X, threshold=0.9, k=1, block_size=8, max_pairs=10)
    assert capped.n_pairs_total == len(full.pairs) > 10 and capped.truncated
    np.testing.assert_array_equal(capped.pairs, full.pairs[:10])


def test_zero_rows_and_tiny_inputs():
    X = np.zeros((3, 4))
    X[0, 0] = 1
    scan = neighbor_scan(X, threshold=0.5, k=10)  # k above N - 1 is clipped
    assert scan.knn_index.shape == (3, 2) and len(scan.pairs) == 0
    assert np.isfinite(scan.outlier_score).all()
    assert neighbor_scan(X[:1]).outlier_score.tolist() == [0.0]
    with pytest.raises(UserInputError, match="threshold"):
        neighbor_scan(X, threshold=2.0)
