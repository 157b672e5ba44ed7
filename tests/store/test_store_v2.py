"""Schema 2: shards + index, snapshot readers, the shard/commit API, compaction, v1 stores."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from embedkit.errors import StoreError, StoreMismatchError
from embedkit.store import (
    BatchShards,
    FeatureStore,
    Fingerprint,
    StoreWriter,
    TapInfo,
    commit_shards,
    compact,
    set_splits,
    store_summary,
    upgrade,
    vacuum,
    verify_store,
    write_shard,
)
from embedkit.store.txn import commit as commit_mod
from tests.helpers import cli

D = 6
FP = Fingerprint.create("arrays", [TapInfo("pool", (D,))], {"kind": "features"})


def rows(start, n, version=0):
    """Rows whose features encode their id (and a version): a wrong row is visible."""
    ids = [f"i{k:05d}" for k in range(start, start + n)]
    x = np.repeat(np.arange(start, start + n, dtype=np.float32)[:, None], D, 1) + version / 10
    digests = [f"{k + 1000 * version:064d}" for k in range(start, start + n)]
    labels = [["a", "b", "c"][k % 3] for k in range(start, start + n)]
    return ids, digests, x, labels


def shard(folder, start, n, version=0):
    ids, digests, x, labels = rows(start, n, version)
    return write_shard(folder, FP, ids, digests, {"pool": x}, labels=labels)


def test_commit_shards_appends_replaces_in_place_and_keeps_inputs(tmp_path):
    store = tmp_path / "s.h5"
    a, b = shard(tmp_path / "w", 0, 10), shard(tmp_path / "w", 10, 5)
    s = commit_shards(store, [a, b], FP)
    assert (s.n_added, s.n_total) == (15, 15) and a.exists() and b.exists()
    again = shard(tmp_path / "w", 3, 4, version=1)  # ids 3..6 changed
    s = commit_shards(store, [again, shard(tmp_path / "w", 15, 2)], FP)
    assert (s.n_added, s.n_replaced, s.n_total) == (2, 4, 17)
    with FeatureStore(store) as fs:
        assert fs.ids().tolist() == [f"i{k:05d}" for k in range(17)]  # first-added order
        x = fs.features()
        assert x[:, 0].astype(int).tolist() == list(range(17))
        assert np.allclose(x[3:7] % 1, 0.1) and np.allclose(x[:3] % 1, 0)
        assert fs.labels().tolist() == [k % 3 for k in range(17)]
        assert fs.features(rows=[16, 4, 0])[:, 0].tolist() == pytest.approx([16, 4.1, 0])
    # A retried worker writes the same file; committing it twice changes nothing.
    assert shard(tmp_path / "w", 0, 10) == a


def test_commit_refuses_a_shard_of_another_fingerprint(tmp_path):
    other = Fingerprint.create("b" * 64, [TapInfo("pool", (D,))], {"kind": "features"})
    ids, digests, x, _ = rows(0, 3)
    path = write_shard(tmp_path / "w", other, ids, digests, {"pool": x})
    commit_shards(tmp_path / "s.h5", [shard(tmp_path / "w", 0, 2)], FP)
    before = (tmp_path / "s.h5").read_bytes()
    with pytest.raises(StoreMismatchError, match="backbone_sha256"):
        commit_shards(tmp_path / "s.h5", [path], FP)
    with pytest.raises(StoreMismatchError, match="backbone_sha256"):
        commit_shards(tmp_path / "s.h5", [path], other)
    assert (tmp_path / "s.h5").read_bytes() == before


def test_open_reader_keeps_its_snapshot_through_commits_and_compaction(tmp_path):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 8)], FP)
    old = FeatureStore(store)
    x_old = old.features()
    commit_shards(store, [shard(tmp_path / "w", 2, 3, version=1)], FP)
    commit_shards(store, [shard(tmp_path / "w", 8, 4)], FP)
    compact(store)  # the old reader's shards stay: a version names them
    vacuum(store, yes=True)  # even a vacuum: the open reader's mapped files stay valid
    assert len(list((tmp_path / "s.h5.d" / "shards").iterdir())) == 1
    assert len(old) == 8 and np.array_equal(old.features(), x_old)
    assert np.array_equal(old.features(rows=[7, 2]), x_old[[7, 2]])
    assert old.ids().tolist() == [f"i{k:05d}" for k in range(8)]
    batches = list(old.iter_batches(3, shuffle=True, seed=0))
    assert sorted(np.concatenate([b[0] for b in batches])[:, 0].tolist()) == list(range(8))
    old.refresh()
    assert len(old) == 12 and old.features(rows=[2])[0, 0] == pytest.approx(2.1)
    old.close()


def test_reads_across_many_shards_match_one_array(tmp_path):
    store = tmp_path / "s.h5"
    for start in range(0, 60, 6):
        commit_shards(store, [shard(tmp_path / "w", start, 6)], FP)
    commit_shards(store, [shard(tmp_path / "w", 5, 20, version=2)], FP)  # scattered runs
    ref = np.repeat(np.arange(60, dtype=np.float32)[:, None], D, 1)
    ref[5:25] += 0.2
    with FeatureStore(store) as fs:
        assert fs.n_shards == 8  # 10 + 1, less the 3 whose rows were all replaced
        assert np.array_equal(fs.features(), ref)
        idx = np.random.default_rng(0).permutation(60)[:25]
        assert np.array_equal(fs.features(rows=idx), ref[idx])
        assert np.array_equal(fs.features(rows=slice(3, 40, 2)), ref[3:40:2])
        got = list(fs.iter_batches(16, shuffle=True, seed=1))
        xs = np.concatenate([b[0] for b in got])
        ys = np.concatenate([b[1] for b in got])
        assert sorted(xs[:, 0].tolist()) == sorted(ref[:, 0].tolist())
        assert ys.tolist() == [int(v) % 3 for v in xs[:, 0].tolist()]  # labels stay aligned
    with h5py.File(store, "r") as f:  # plain h5py: one virtual array per tap
        assert np.array_equal(f["features/pool"][...], ref)
        assert f["ids"][59].decode() == "i00059"


def test_automatic_compaction_past_the_shard_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(commit_mod, "MAX_SHARDS", 4)
    store = tmp_path / "s.h5"
    for start in range(0, 30, 5):
        commit_shards(store, [shard(tmp_path / "w", start, 5)], FP)
    with FeatureStore(store) as fs:
        assert fs.n_shards <= 4
        assert fs.features()[:, 0].astype(int).tolist() == list(range(30))
    vacuum(store, yes=True)  # merged shards stay for older versions until a vacuum
    files = sorted(p.name for p in (tmp_path / "s.h5.d" / "shards").iterdir())
    with FeatureStore(store) as fs:
        assert len(files) == fs.n_shards


def test_split_rewrites_only_the_index(tmp_path):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 6)], FP)
    shards_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s.h5.d/shards").iterdir()}
    set_splits(store, ["train", "test", "", "val", "train", "test"])
    with FeatureStore(store) as fs:
        assert fs.splits().tolist() == ["train", "test", "", "val", "train", "test"]
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s.h5.d/shards").iterdir()}
    assert after == shards_before


def write_v1(path, n=7):
    """A schema-1 store as embedkit 0.1 wrote it: one file, contiguous datasets."""
    ids, digests, x, labels = rows(0, n)
    text = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=text)
        f.create_dataset("digests", data=np.asarray(digests, dtype="S64"))
        f.create_dataset("labels", data=np.asarray([k % 3 for k in range(n)], np.int64))
        f.create_dataset("label_names", data=np.asarray(["a", "b", "c"], dtype=object), dtype=text)
        f.create_dataset("split", data=np.asarray([""] * n, dtype="S8"))
        f.create_group("features").create_dataset("pool", data=x)
        bad = f.create_group("bad")
        bad.create_dataset("ids", data=np.asarray(["gone"], dtype=object), dtype=text)
        bad.create_dataset("digests", data=np.asarray(["0" * 64], dtype="S64"))
        bad.create_dataset("reasons", data=np.asarray(["broken"], dtype=object), dtype=text)
        attrs = {**FP.to_attrs(), "schema_version": 1, "format": "embedkit-feature-store"}
        attrs.update(runs=json.dumps([{"added": n}]), created="2024-01-01T00:00:00+00:00")
        f.attrs.update(attrs)
    return x


def test_v1_store_is_refused_until_upgraded_then_reads_and_takes_writes(tmp_path, capfd):
    x = write_v1(tmp_path / "v1.h5")
    before = (tmp_path / "v1.h5").read_bytes()
    for command in (("info",), ("split", "--force"), ("store", "verify"), ("store", "compact")):
        result = cli(capfd, *command[:2], str(tmp_path / "v1.h5"), *command[2:])
        assert result.returncode == 2, command
        assert "schema-1" in result.stderr and "embedkit store upgrade" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(StoreError, match="store upgrade"):
        StoreWriter(tmp_path / "v1.h5", FP)
    assert (tmp_path / "v1.h5").read_bytes() == before  # refused, untouched
    result = cli(capfd, "store", "upgrade", str(tmp_path / "v1.h5"))
    assert result.returncode == 0 and "converted to the current layout" in result.stdout
    info = store_summary(tmp_path / "v1.h5")
    assert (info["schema_version"], info["shards"], info["items"], info["runs"]) == (2, 1, 7, 1)
    with FeatureStore(tmp_path / "v1.h5") as fs:
        assert np.array_equal(fs.features(), x) and fs.version == 1
        assert fs.bad_items() == [{"id": "gone", "reason": "broken"}]
        assert fs.labels().tolist() == [k % 3 for k in range(7)]
    assert upgrade(tmp_path / "v1.h5") is False
    assert verify_store(tmp_path / "v1.h5") == []
    ids, digests, x2, labels = rows(7, 3)
    with StoreWriter(tmp_path / "v1.h5", FP) as w:
        w.plan(ids, digests)
        w.begin(BatchShards(ids, 3))
        w.write_batch(0, ids, digests, labels, None, {"pool": x2})
        assert w.commit().n_total == 10
    with FeatureStore(tmp_path / "v1.h5") as fs:
        assert np.array_equal(fs.features(), np.concatenate([x, x2]))


def test_pack_is_one_file_for_h5py_that_upgrade_turns_back_into_a_store(tmp_path, capfd):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 5), shard(tmp_path / "w", 5, 5)], FP)
    commit_shards(store, [shard(tmp_path / "w", 1, 2, version=1)], FP)
    result = cli(capfd, "store", "pack", str(store), str(tmp_path / "p" / "one.h5"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["one.h5"]
    with FeatureStore(store) as a, h5py.File(tmp_path / "p" / "one.h5", "r") as b:
        assert np.array_equal(a.features(), b["features/pool"][...])  # real datasets
        assert a.ids().tolist() == b["ids"].asstr()[...].tolist()
        assert a.labels().tolist() == b["labels"][...].tolist()
    again = cli(capfd, "store", "pack", str(store), str(tmp_path / "p" / "one.h5"))
    assert again.returncode == 2 and "already exists" in again.stderr
    info = cli(capfd, "info", str(tmp_path / "p" / "one.h5"))
    assert info.returncode == 2 and "packed" in info.stderr and "store upgrade" in info.stderr
    assert cli(capfd, "store", "upgrade", str(tmp_path / "p" / "one.h5")).returncode == 0
    info = cli(capfd, "info", str(tmp_path / "p" / "one.h5"))
    assert "10 items" in info.stdout and "schema v2, 1 shard" in info.stdout
    with FeatureStore(store) as a, FeatureStore(tmp_path / "p" / "one.h5") as b:
        assert np.array_equal(a.features(), b.features()) and a.ids().tolist() == b.ids().tolist()
    commit_shards(tmp_path / "p" / "one.h5", [shard(tmp_path / "w", 10, 2)], FP)
    with FeatureStore(tmp_path / "p" / "one.h5") as b:
        assert len(b) == 12 and b.n_shards == 2


def test_compact_cli_and_missing_shard_error(tmp_path, capfd):
    store = tmp_path / "s.h5"
    for start in (0, 4, 8):
        commit_shards(store, [shard(tmp_path / "w", start, 4)], FP)
    result = cli(capfd, "store", "compact", str(store))
    assert result.returncode == 0 and "compacted 3 shard(s) into 1" in result.stdout
    (tmp_path / "copy.h5").write_bytes(store.read_bytes())  # the index alone is not a store
    result = cli(capfd, "info", str(tmp_path / "copy.h5"))
    assert result.returncode == 2 and "store pack" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_temporary_files_go_with_the_next_writer_unnamed_shards_with_vacuum(tmp_path):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 4)], FP)
    folder = tmp_path / "s.h5.d"
    orphan = shard(folder / "shards", 50, 2)  # written, never committed
    debris = [
        tmp_path / "s.h5.tmp-123",  # a schema-1 commit
        folder / "index.tmp-123",
        folder / "shards" / "abc.h5.tmp-123",
        folder / "journal" / "def.h5.tmp-9",
    ]
    for path in debris:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    with StoreWriter(store, FP):
        pass
    assert orphan.exists() and not any(p.exists() for p in debris)  # commits never delete
    assert [p.name for p in vacuum(store, yes=True).paths] == [orphan.name]
    assert not orphan.exists()
    with FeatureStore(store) as fs:
        assert len(fs) == 4


def test_lock_error_names_the_holder(tmp_path):
    import os

    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 2)], FP)
    with StoreWriter(store, FP):
        with pytest.raises(StoreError, match=rf"pid {os.getpid()}, extracting since"):
            commit_shards(store, [shard(tmp_path / "w", 0, 2)], FP, timeout=0.1)
        with pytest.raises(StoreError, match="waited 0.1 s"):
            set_splits(store, [], timeout=0.1)
    assert not (tmp_path / "s.h5.d" / "lock.json").exists()
