"""Structural checks on open and ``embedkit store verify``: sound stores of every layout pass,
damaged ones are refused in one line (the CLI cases are in tests/reliability/cases_stores.py)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from embedkit.errors import StoreError
from embedkit.store import FeatureStore, commit_shards, compact, pack, upgrade, verify_store
from tests.helpers import cli
from tests.store.test_store_v2 import FP, shard, write_v1


def _many_shards(tmp_path):
    """Three shards, replaced rows (several row runs), a compaction and more rows."""
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 40), shard(tmp_path / "w", 40, 20)], FP)
    commit_shards(store, [shard(tmp_path / "w", 10, 5, version=1)], FP)
    commit_shards(store, [shard(tmp_path / "w", 60, 7)], FP)
    return store


def test_sound_stores_of_every_layout_verify_clean(tmp_path, capfd):
    store = _many_shards(tmp_path)
    with FeatureStore(store) as fs:
        assert fs.n_shards >= 3 and len(fs) == 67
    assert verify_store(store) == []
    packed = pack(store, tmp_path / "p" / "one.h5")
    (problem,) = verify_store(packed)  # a packed file is read only by store upgrade
    assert "packed" in problem and "store upgrade" in problem
    assert upgrade(packed) and verify_store(packed) == []
    write_v1(tmp_path / "v1.h5")
    upgrade(tmp_path / "v1.h5")  # the schema-1 rows are copied into a shard
    assert verify_store(tmp_path / "v1.h5") == []
    commit_shards(tmp_path / "v1.h5", [shard(tmp_path / "w", 7, 3)], FP)
    assert verify_store(tmp_path / "v1.h5") == []
    compact(store)
    assert verify_store(store) == []
    result = cli(capfd, "store", "verify", str(store))
    assert result.returncode == 0 and result.stderr == ""
    assert "ok (67 rows, 1 shard(s)" in result.stdout


def test_open_never_reads_features_but_verify_does(tmp_path):
    store = _many_shards(tmp_path)
    with FeatureStore(store) as fs:
        shard_name = fs._state.shards[0]
    with h5py.File(tmp_path / "s.h5.d" / "shards" / shard_name, "r+") as f:
        f["features/pool"][3] = np.nan  # the content hash covers ids/digests, not features
    with FeatureStore(store) as fs:  # cheap checks: the value is not looked at
        assert np.isnan(fs.features(rows=[3])).all()
    problems = verify_store(store)  # the NaN, then the edit itself (the shard's checksum)
    assert len(problems) == 2 and "/features/pool row 3 holds NaN" in problems[0]
    assert shard_name in problems[0] and shard_name in problems[1] and "CRC-32" in problems[1]


def test_verify_lists_every_problem_and_the_cli_names_the_first(tmp_path, capfd):
    store = _many_shards(tmp_path)
    with h5py.File(store, "r+") as f:
        f.attrs["n_items"] = 5
        del f["bad/reasons"]
    (tmp_path / "s.h5.d" / "shards" / "stray.h5.tmp-9").write_bytes(b"x")
    problems = verify_store(store)
    assert [p.split(": ", 1)[1][:22] for p in problems] == [
        "attribute 'n_items' is",
        "/bad/reasons is missin",
        "the index file s.h5: i",  # its checksum: edited after it was written
        "debris (a temporary fi",
    ]
    before = store.read_bytes()
    result = cli(capfd, "store", "verify", str(store))
    assert result.returncode == 2 and result.stdout.splitlines() == problems
    (line,) = result.stderr.splitlines()
    assert "'n_items'" in line and "(4 problems in all" in line and "Traceback" not in line
    assert store.read_bytes() == before


def test_each_check_on_open_raises_one_store_error(tmp_path):
    store = _many_shards(tmp_path)
    with h5py.File(store, "r+") as f:
        labels = f["labels"][...]
        labels[4] = 9
        f["labels"][...] = labels
    with pytest.raises(StoreError, match=r"/labels row 4 is 9, beyond /label_names \(3 names\)"):
        FeatureStore(store)
    with pytest.raises(StoreError, match="/labels row 4"):  # the writers' path too
        commit_shards(store, [shard(tmp_path / "w", 90, 2)], FP)
