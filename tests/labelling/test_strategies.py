"""Selection strategies on real arrays: what each promises, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from embedkit.errors import UserInputError
from embedkit.labelling import STRATEGIES, select
from embedkit.labelling.auto import choose


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(600, 16, centers=6, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_picks_budget_distinct_unlabelled_rows(blobs, strategy):
    X, y = blobs
    labels = np.full(len(y), -1)
    labelled = [np.flatnonzero(y == c)[0] for c in range(6)]  # one per class
    labels[labelled] = y[labelled]
    pick = select(X, labels, 12, strategy=strategy, seed=0)
    assert len(pick.rows) == 12 == len(set(pick.rows.tolist())) == len(pick.scores)
    assert (labels[pick.rows] == -1).all()
    assert pick.strategy == strategy


@pytest.mark.parametrize("strategy", ["typical", "coverage"])
def test_cold_start_strategies_cover_every_cluster(blobs, strategy):
    X, y = blobs
    pick = select(X, np.full(len(y), -1), 6, strategy=strategy, seed=0)
    assert sorted(set(y[pick.rows].tolist())) == list(range(6))


def test_typical_picks_the_centre_of_a_cluster(blobs):
    X, y = blobs
    rows = select(X, np.full(len(y), -1), 6, strategy="typical", seed=0).rows
    for r in rows:  # nearer its class mean than the median row of that class
        members = X[y == y[r]]
        dist = np.linalg.norm(members - members.mean(0), axis=1)
        assert np.linalg.norm(X[r] - members.mean(0)) < np.median(dist)


def test_margin_picks_rows_between_classes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2)).astype(np.float32)
    labels = np.full(400, -1)
    labels[np.argsort(X[:, 0])[[0, 1, -2, -1]]] = [0, 0, 1, 1]  # the far ends only
    rows = select(X, labels, 10, strategy="margin", seed=0).rows
    assert np.abs(X[rows, 0]).mean() < np.abs(X[:, 0]).mean() / 2


def test_spread_margin_picks_rows_where_spreading_is_unsure():
    """Two touching blobs, labelled at their centres: half the picks lie on the border."""
    X, y = make_blobs(600, 2, centers=[[-2, 0], [2, 0]], cluster_std=1.0, random_state=0)
    labels = np.full(600, -1)
    for c in (0, 1):  # the 3 rows nearest each centre
        near = np.argsort(np.linalg.norm(X - [4 * c - 2, 0], axis=1))[:3]
        labels[near] = c
    pick = select(X, labels, 10, strategy="spread-margin", seed=0)
    # the second half, one per cluster of the unsure rows: along the border, not only at 0
    border = pick.rows[5:]
    assert np.abs(X[border, 0]).mean() < 0.7 * np.abs(X[:, 0]).mean()  # random: ~1.0
    assert pick.note == "spreads over centre rows"


def test_auto_takes_typical_at_low_budgets_and_follows_a_record():
    assert choose(np.full(100, -1), 10, None)[0] == "typical"
    many = np.repeat([0, 1], 50)
    assert choose(many, 10, None)[0] == "hybrid"  # 55 labels per class
    record = {"best": {"2": "coverage", "50": "margin"}}
    assert choose(np.repeat([0, 1, -1], [1, 1, 98]), 2, record)[0] == "coverage"
    assert choose(many, 10, record)[0] == "margin"


@pytest.mark.parametrize(
    ("budget", "strategy", "labels", "message"),
    [
        (0, "random", None, "--budget 0"),
        (601, "random", None, "--budget 601"),
        (5, "greedy", None, "unknown strategy 'greedy'; known: auto"),
        (5, "margin", None, "needs labelled rows of at least 2 classes"),
    ],
)
def test_bad_requests_are_one_line(blobs, budget, strategy, labels, message):
    X, y = blobs
    with pytest.raises(UserInputError, match=message) as info:
        select(X, np.full(len(y), -1) if labels is None else labels, budget, strategy=strategy)
    assert "\n" not in str(info.value)


def test_large_pools_use_minibatch_kmeans_and_still_cover_the_clusters():
    X, y = make_blobs(25_000, 8, centers=5, random_state=1)  # above the exact k-means limit
    pick = select(X.astype(np.float32), np.full(len(y), -1), 5, strategy="typical", seed=0)
    assert sorted(set(y[pick.rows].tolist())) == list(range(5))


def test_typical_clusters_whitened_rows_only_when_a_few_directions_dominate(blobs):
    """Wide features of effective rank under 128 are whitened first; flat or narrow not."""
    X, y = blobs  # 16 dims: never whitened
    rng = np.random.default_rng(0)
    wide = (X @ rng.normal(size=(16, 300)) + rng.normal(size=X.shape[:1] + (300,))).astype(
        np.float32
    )  # 300 dims, a few strong directions
    flat = rng.normal(size=(len(y), 300)).astype(np.float32)
    notes = {name: select(Z, np.full(len(y), -1), 6, strategy="typical", seed=0).note
             for name, Z in (("wide", wide), ("flat", flat), ("narrow", X))}  # fmt: skip
    assert notes == {"wide": "clusters whiten rows", "flat": "clusters centre rows",
                     "narrow": "clusters centre rows"}  # fmt: skip


def test_the_select_command_offers_every_strategy():
    from embedkit.cli._label_cmds import _STRATEGIES

    assert set(_STRATEGIES) == {"auto", *STRATEGIES}
