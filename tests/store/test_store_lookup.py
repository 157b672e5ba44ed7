"""Finding store rows by id (RowLookup, IdIndex) and the row map of appending commits."""

from __future__ import annotations

import numpy as np

from embedkit.store import Fingerprint, TapInfo, commit_shards, write_shard
from embedkit.store.files.shards import id_hashes
from embedkit.store.read.idindex import IdIndex
from embedkit.store.read.state import extend_segments, load_state, segments_of
from embedkit.store.txn.begin import RowLookup

FP = Fingerprint.create("arrays", [TapInfo("pool", (2,))], {"kind": "features"})


def _prefix_twins(n: int = 200_000) -> tuple[str, str]:
    """Two ids whose hashes share the 32 bits the lookup sorts by (a birthday search)."""
    ids = [f"t{i}" for i in range(n)]
    prefix = id_hashes(ids).view(np.uint64)[::2] >> np.uint64(32)  # (n,)
    order = np.argsort(prefix, kind="stable")
    j = int(np.flatnonzero(prefix[order][1:] == prefix[order][:-1])[0])
    return ids[order[j]], ids[order[j + 1]]


def test_lookup_resolves_ids_whose_sort_prefix_collides(tmp_path):
    a, b = _prefix_twins()
    ids = ["x0", a, "x1", b, "x2"]
    feats = {"pool": np.arange(10, dtype="f4").reshape(5, 2)}
    path = write_shard(tmp_path, FP, ids, ["0" * 64] * 5, feats)
    store = tmp_path / "s.h5"
    commit_shards(store, [path], FP)
    lookup = RowLookup(store, load_state(store))
    assert lookup.rows(id_hashes([b, "absent", a, "x2", "x0"])).tolist() == [3, -1, 1, 4, 0]


def test_lookup_after_commits_across_shards(tmp_path):
    store = tmp_path / "s.h5"
    for k in range(3):
        ids = [f"r{k}-{i}" for i in range(50)]
        feats = {"pool": np.zeros((50, 2), "f4")}
        commit_shards(store, [write_shard(tmp_path, FP, ids, ["0" * 64] * 50, feats)], FP)
    lookup = RowLookup(store, load_state(store))
    asked = ["r2-49", "r0-0", "r1-7", "nope"]
    assert lookup.rows(id_hashes(asked)).tolist() == [149, 0, 57, -1]


def test_extend_segments_matches_segments_of_the_whole_store():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_old, n_new = rng.integers(0, 12, 2)
        shard = rng.integers(0, 3, n_old + n_new)  # (N,) runs that may continue across
        src = np.cumsum(rng.integers(0, 3, n_old + n_new))
        old = segments_of(shard[:n_old], src[:n_old])
        got = extend_segments(old, shard[n_old:], src[n_old:])
        np.testing.assert_array_equal(got, segments_of(shard, src))


def test_id_index_repeats_compare_full_hashes_not_prefixes():
    a, b = _prefix_twins()
    assert IdIndex(id_hashes(["x", a, "y", b])).repeats() == []  # same prefix, other ids
    assert IdIndex(id_hashes(["x", a, "y", a, "z"])).repeats() == [(1, 3)]


def test_a_lookup_on_the_state_read_on_open_finds_rows_by_id(tmp_path):
    store = tmp_path / "s.h5"
    ids = [f"r{i}" for i in range(100)]
    feats = {"pool": np.zeros((100, 2), "f4")}
    commit_shards(store, [write_shard(tmp_path, FP, ids, ["0" * 64] * 100, feats)], FP)
    state = load_state(store)
    assert state.id_index is not None  # built while checking ids on open
    lookup = RowLookup(store, state)
    assert lookup.rows(id_hashes(["r99", "r0", "zz"])).tolist() == [99, 0, -1]
