"""Labels and split in column files: appends write only the new rows' values; older
schema-2 indexes (labels and split inside the index) are refused until `store upgrade`."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from embedkit.errors import StoreError
from embedkit.store import (
    FeatureStore,
    StoreWriter,
    commit_shards,
    set_splits,
    upgrade,
    vacuum,
    verify_store,
)
from embedkit.store.files.integrity import stamp
from embedkit.store.format import column_dir, version_dir
from embedkit.store.maintain.versions import unnamed_files
from embedkit.store.read.state import load_state
from tests.helpers import cli
from tests.store.test_store_v2 import FP, rows, shard


def _pieces(store):
    return load_state(store).pieces


def _files(store):
    return {p.name: p.stat().st_ino for p in column_dir(store).iterdir()}


def test_append_keeps_the_old_column_files_and_writes_the_new_rows_only(tmp_path):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 100)], FP)
    ((first, n),) = _pieces(store)
    assert n == 100
    before = _files(store)
    commit_shards(store, [shard(tmp_path / "w", 100, 10)], FP)
    pieces = _pieces(store)
    assert pieces[0] == (first, 100) and pieces[1][1] == 10  # only the 10 new rows written
    assert _files(store)[first] == before[first]  # the same file, not rewritten
    with FeatureStore(store) as fs:
        assert fs.labels().tolist() == [k % 3 for k in range(110)]
    with h5py.File(store, "r") as f:  # plain h5py sees one array per column
        assert f["labels"].is_virtual and f["labels"][...].tolist() == [k % 3 for k in range(110)]
        assert f["split"][...].tolist() == [b""] * 110
    assert verify_store(store) == []


def test_many_appends_keep_few_column_files_with_the_right_values(tmp_path):
    store = tmp_path / "s.h5"
    for k in range(40):
        commit_shards(store, [shard(tmp_path / "w", 5 * k, 5)], FP)
        assert len(_pieces(store)) <= 2 * np.log2(k + 2)  # merged like a binary counter
    vacuum(store, yes=True)  # superseded column files stay until a vacuum
    assert sorted(_files(store)) == sorted({name for name, _ in _pieces(store)})
    with FeatureStore(store) as fs:
        assert fs.labels().tolist() == [k % 3 for k in range(200)]
        assert fs.ids().tolist() == [f"i{k:05d}" for k in range(200)]
    assert verify_store(store) == []


def test_changed_rows_rewrite_the_columns_once(tmp_path):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 30)], FP)
    commit_shards(store, [shard(tmp_path / "w", 30, 5)], FP)
    set_splits(store, ["test" if k % 4 == 0 else "train" for k in range(35)])
    (piece,) = _pieces(store)
    assert piece[1] == 35
    ids, digests, x, labels = rows(0, 35)
    with StoreWriter(store, FP) as w:  # the source now labels row 2 "a"
        assert w.relabel([ids[2]], ["a"]) == 1
        w.commit()
    with FeatureStore(store) as fs:
        assert fs.labels().tolist()[:4] == [0, 1, 0, 0]
        assert fs.splits().tolist() == ["test" if k % 4 == 0 else "train" for k in range(35)]
    assert len(_pieces(store)) == 1 and verify_store(store) == []


def _old_v2(store):
    """Rewrite the index as older schema-2 writers did: labels and split gzip-compressed
    inside the index, no ``/_store/columns``, no column files."""
    with h5py.File(store, "r+") as f:
        labels, split = f["labels"][...], f["split"][...]
        del f["labels"], f["split"], f["_store/columns"]
        for key in ("version", "operation", "committed", "change"):
            del f.attrs[key]
        packed = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        f.create_dataset("labels", data=labels, **packed)
        f.create_dataset("split", data=split.astype("S8"), **packed)
    for p in column_dir(store).iterdir():
        p.unlink()
    column_dir(store).rmdir()
    stamp(store)  # as written: its checksum holds; older writers kept no versions
    shutil.rmtree(version_dir(store))


def test_older_schema2_index_is_refused_until_upgraded(tmp_path, capfd):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 20)], FP)
    set_splits(store, ["val"] * 20)
    _old_v2(store)
    with pytest.raises(StoreError, match="before column files.*store upgrade"):
        FeatureStore(store)
    result = cli(capfd, "info", str(store))
    assert result.returncode == 2 and "embedkit store upgrade" in result.stderr
    with pytest.raises(StoreError, match="store upgrade"):
        commit_shards(store, [shard(tmp_path / "w", 20, 4)], FP)
    assert upgrade(store)  # the one reader of the old layout: it writes the column files
    assert sum(n for _, n in _pieces(store)) == 20
    with h5py.File(store, "r") as f:
        assert f["labels"].is_virtual
    commit_shards(store, [shard(tmp_path / "w", 20, 4)], FP)
    with FeatureStore(store) as fs:
        assert fs.labels().tolist() == [k % 3 for k in range(24)]
        assert fs.splits().tolist() == ["val"] * 20 + [""] * 4
    assert verify_store(store) == []


def test_stray_column_file_waits_for_vacuum_and_a_missing_one_is_an_error(tmp_path, capfd):
    store = tmp_path / "s.h5"
    commit_shards(store, [shard(tmp_path / "w", 0, 10)], FP)
    ((name, _),) = _pieces(store)
    stray = column_dir(store) / ("0" * 32 + ".h5")  # as a writer killed before its rename
    stray.write_bytes((column_dir(store) / name).read_bytes())
    assert verify_store(store) == []  # a file no version names is no damage
    assert unnamed_files(store) == [stray]
    commit_shards(store, [shard(tmp_path / "w", 10, 2)], FP)  # commits never delete a file
    assert stray.exists()
    vacuum(store, yes=True)  # vacuum does
    assert not stray.exists() and verify_store(store) == []
    for piece, _ in _pieces(store):
        (column_dir(store) / piece).unlink()
    with pytest.raises(StoreError, match="column file .* is missing"):
        FeatureStore(store)
    result = cli(capfd, "info", str(store))
    assert result.returncode == 2 and "column file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
