"""``embedkit store export``: Parquet and .npy exports read back by pandas, pyarrow and NumPy
bit for bit, streamed in chunks; bad arguments give one line and leave nothing behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.errors import UserInputError
from embedkit.rows import from_arrays
from embedkit.store import FeatureStore
from embedkit.store.read.export import export_store
from tests.helpers import cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    X = {"pool": rng.normal(size=(11, 5)).astype(np.float32),
         "fmap": rng.normal(size=(11, 2, 3)).astype(np.float32)}  # fmt: skip
    y = ["cat", "dog", None, "cat", "dog", "cat", "dog", "cat", None, "dog", "cat"]
    splits = ["train"] * 6 + ["test"] * 3 + [""] * 2
    path = tmp_path / "f.h5"
    from_arrays(path, X, y=y, ids=[f"item{i}" for i in range(11)], splits=splits)
    return path


def test_parquet_round_trip_is_bit_identical_in_chunks(store, tmp_path):
    out = tmp_path / "f.parquet"
    summary = export_store(store, out, chunk_rows=4)  # three row groups
    assert summary.n_rows == 11 and summary.taps == ("pool", "fmap")
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == 3
    table = pq.read_table(out)
    embedkit = json.loads(table.schema.metadata[b"embedkit"])
    assert embedkit["label_names"] == ["cat", "dog"] and embedkit["taps"]["fmap"]["shape"] == [2, 3]
    assert table.schema.field("fmap").metadata[b"embedkit.shape"] == b"[2, 3]"
    pandas = pytest.importorskip("pandas")
    df = pandas.read_parquet(out)
    with FeatureStore(store) as fs:
        assert df["id"].tolist() == fs.ids().tolist()
        names = np.array(fs.label_names + [None], dtype=object)
        assert table.column("label").to_pylist() == names[fs.labels()].tolist()  # null: no label
        assert table.column("split").to_pylist() == [s or None for s in fs.splits().tolist()]
        assert df["label"].isna().tolist() == [y is None for y in names[fs.labels()]]
        pool = np.stack(df["pool"].to_numpy())
        assert pool.dtype == np.float32 and pool.tobytes() == fs.features("pool").tobytes()
        fmap = np.stack(df["fmap"].to_numpy()).reshape(-1, 2, 3)
        assert fmap.tobytes() == fs.features("fmap").tobytes()


def test_npy_folder_and_one_tap(store, tmp_path, capfd):
    result = cli(capfd, "store", "export", store, "--format", "npy", "--tap", "fmap",
                     "--out", tmp_path / "npy")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stdout and "11 rows, taps fmap" in result.stdout
    folder = tmp_path / "npy"
    assert sorted(p.name for p in folder.iterdir()) == [
        "fmap.npy", "ids.npy", "label_names.json", "labels.npy", "splits.npy"]  # fmt: skip
    with FeatureStore(store) as fs:
        fmap = np.load(folder / "fmap.npy", allow_pickle=False)
        assert fmap.shape == (11, 2, 3) and fmap.tobytes() == fs.features("fmap").tobytes()
        assert np.load(folder / "ids.npy").tolist() == fs.ids().tolist()
        assert (np.load(folder / "labels.npy") == fs.labels()).all()
        assert np.load(folder / "splits.npy").tolist() == fs.splits().tolist()
    assert json.loads((folder / "label_names.json").read_text()) == ["cat", "dog"]


def test_bad_arguments_leave_nothing(store, tmp_path, capfd):
    out = tmp_path / "x.parquet"
    result = cli(capfd, "store", "export", store, "--tap", "nope", "--out", out)
    assert result.returncode == 2 and "has no tap 'nope'; its taps are: pool, fmap" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    out.write_bytes(b"keep me")
    result = cli(capfd, "store", "export", store, "--out", out)
    assert result.returncode == 2 and "x.parquet already exists" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = cli(capfd, "store", "export", store, "--out", store)  # never an input
    assert result.returncode == 2 and "is an input of this command" in result.stderr
    with pytest.raises(UserInputError, match="no such folder"):
        export_store(store, tmp_path / "missing" / "f.parquet")
    result = cli(capfd, "store", "export", tmp_path / "nostore.h5", "--out", tmp_path / "y.parquet")
    assert result.returncode == 2 and "no such store" in result.stderr
    assert not (tmp_path / "y.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_an_earlier_export_is_replaced_and_overwrite_replaces_others(store, tmp_path, capfd):
    out = tmp_path / "f.parquet"
    assert cli(capfd, "store", "export", store, "--tap", "pool", "--out", out).returncode == 0
    result = cli(capfd, "store", "export", store, "--out", out)  # its own earlier output
    assert result.returncode == 0, result.stderr
    assert pq.read_schema(out).names == ["id", "label", "split", "pool", "fmap"]
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = cli(capfd, "store", "export", store, "--format", "npy", "--out", folder)
    assert result.returncode == 2 and (folder / "notes.txt").exists()
    result = cli(capfd, "store", "export", store, "--format", "npy", "--out", folder, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert not (folder / "notes.txt").exists() and (folder / "pool.npy").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name or "old" in p.name) == []


def test_a_commit_during_the_export_leaves_it_on_its_version(store, tmp_path):
    from embedkit.store import commit_shards, compact, write_shard
    from embedkit.store.read.export import _Rows

    with FeatureStore(store) as fs:
        rows, fp, before = _Rows(fs, store), fs.fingerprint, fs.features("pool")
    x = {"pool": np.full((1, 5), 9, np.float32), "fmap": np.zeros((1, 2, 3), np.float32)}
    shard = write_shard(tmp_path / "in", fp, ["new"], ["0" * 64], x)
    commit_shards(store, [shard], fp)  # another writer commits between open and read
    compact(store)  # and merges the shards the export reads
    np.testing.assert_array_equal(rows.features("pool", 0, rows.n), before)
    rows.close()
