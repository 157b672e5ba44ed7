"""No command leaves superseded files, and a damaged file under a name a writer is about to
place is replaced, not kept (issue 20)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embedkit.cli import main
from embedkit.extract import extract
from embedkit.rows import from_arrays
from embedkit.store import FeatureStore, compact, verify_store
from embedkit.store.read.state import load_state
from tests.extract.extract_graphs import make_array_model


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(40) % 3)
    return {"model": make_array_model(tmp_path / "m.onnx"), "x": x, "root": tmp_path}


def _extract(arrays, store, x=None, labels="y.npy"):
    root = arrays["root"]
    if x is not None:
        np.save(root / "x2.npy", x)
    src = root / ("x.npy" if x is None else "x2.npy")
    return extract(arrays["model"], src, store, progress=False, labels=str(root / labels))


def test_no_superseded_file_survives_extract_split_relabel_append_compact(arrays, capsys):
    root = arrays["root"]
    store = root / "s.h5"
    _extract(arrays, store)
    assert verify_store(store) == []
    steps = [
        lambda: main(["split", str(store), "--test", "0.25"]),
        lambda: main(["split", str(store), "--force", "--val", "0.2"]),
        lambda: (
            np.save(root / "y2.npy", np.arange(40) % 4),
            _extract(arrays, store, None, "y2.npy"),
        ),
        lambda: (
            np.save(root / "y3.npy", np.arange(45) % 4),
            _extract(arrays, store, np.concatenate([arrays["x"], arrays["x"][:5] + 1]), "y3.npy"),
        ),
        lambda: compact(store),
        lambda: main(["split", str(store), "--force", "--retest", "--test", "0.3"]),
    ]
    for step in steps:
        step()
        assert verify_store(store) == [], step
    with FeatureStore(store) as fs:
        assert len(fs) == 45 and len(fs.label_names) == 4


def test_a_swapped_shard_is_replaced_by_the_rerun(arrays):
    root = arrays["root"]
    store, other = root / "s.h5", root / "other.h5"
    _extract(arrays, store)
    _extract(arrays, other, arrays["x"] * 2)  # same ids and labels, other content
    (shard,) = (root / "s.h5.d" / "shards").iterdir()
    (twin,) = (root / "other.h5.d" / "shards").iterdir()
    shutil.copyfile(twin, shard)  # same name, other values
    assert any("does not hash to its name" in p for p in verify_store(store))
    summary = _extract(arrays, store)  # the documented re-run
    assert summary.n_computed == 40
    assert verify_store(store) == []
    with FeatureStore(store) as fs:
        np.testing.assert_array_equal(fs.features(), _fresh(arrays, root / "fresh.h5"))


def _fresh(arrays, path):
    _extract(arrays, path)
    with FeatureStore(path) as fs:
        return fs.features()


def _rows(path):
    with FeatureStore(path) as fs:
        return fs.ids().tolist(), fs.features(), fs.labels(), fs.splits(), fs.label_names


def test_recover_gives_back_every_row_after_the_index_is_deleted(arrays, capsys):
    root = arrays["root"]
    store = root / "s.h5"
    _extract(arrays, store)
    main(["split", str(store), "--test", "0.25"])
    np.save(root / "y3.npy", np.arange(45) % 4)  # 5 new rows, a new class, relabelled rows
    _extract(arrays, store, np.concatenate([arrays["x"], arrays["x"][:5] + 1]), "y3.npy")
    before = _rows(store)
    store.unlink()
    for argv in (
        ["info", str(store)],
        ["extract", str(arrays["model"]), str(root / "x.npy"), "--out", str(store), "--quiet"],
        ["split", str(store), "--force"],
    ):
        assert main(argv) == 2
        assert "store recover" in capsys.readouterr().err
    assert main(["store", "recover", str(store)]) == 0
    assert verify_store(store) == []
    after = _rows(store)
    assert before[0] == after[0] and before[4] == after[4]
    for a, b in zip(before[1:4], after[1:4]):
        np.testing.assert_array_equal(a, b)
    assert main(["store", "recover", str(store)]) == 2  # the index exists: nothing to do


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_verify_finds_any_flipped_byte_in_any_file_of_the_store(tmp_path):
    rng = np.random.default_rng(1)
    store = tmp_path / "s.h5"
    from_arrays(store, rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 2)
    assert main(["split", str(store), "--test", "0.25"]) == 0
    assert verify_store(store) == []
    folder = tmp_path / "s.h5.d"
    state = load_state(store)  # the files of the newest version (older ones are history)
    files = [
        store,
        *(folder / "versions").iterdir(),
        *(folder / "shards" / name for name in state.shards),
        *(folder / "columns" / name for name, _ in state.pieces),
    ]
    missed = []
    for path in files:
        size = path.stat().st_size
        for offset in sorted({*range(0, size, max(1, size // 60)), size - 1, 512, 600}):
            original = path.read_bytes()
            _flip(path, offset)
            try:
                problems = verify_store(store)
            except Exception as exc:  # noqa: BLE001 - an error naming the file counts too
                problems = [str(exc)]
            path.write_bytes(original)
            if not any(path.name in p for p in problems):
                missed.append((path.name, offset, problems[:1]))
    assert not missed, missed[:5]
    assert verify_store(store) == []


def test_repair_then_rerun_equals_an_uninterrupted_extract(arrays, capsys):
    root = arrays["root"]
    store = root / "s.h5"
    _extract(arrays, store)
    (shard,) = (root / "s.h5.d" / "shards").iterdir()
    _flip(shard, shard.stat().st_size - 7)  # a feature byte: ids and digests unchanged
    assert main(["store", "verify", str(store)]) == 2
    assert shard.name in capsys.readouterr().err
    assert main(["store", "verify", str(store), "--repair"]) == 2  # marked: needs the source
    assert "re-run `embedkit extract" in capsys.readouterr().err
    summary = _extract(arrays, store)  # the documented re-run
    assert summary.n_computed == 40
    assert verify_store(store) == []
    assert _rows(store)[0] == _rows(_fresh_path(arrays, root / "fresh.h5"))[0]
    np.testing.assert_array_equal(_rows(store)[1], _rows(root / "fresh.h5")[1])


def _fresh_path(arrays, path):
    _extract(arrays, path)
    return path


def test_repair_restores_a_damaged_index_and_column_file(tmp_path, capsys):
    rng = np.random.default_rng(2)
    store = tmp_path / "s.h5"
    from_arrays(store, rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 2)
    before = _rows(store)
    _flip(store, store.stat().st_size // 2)
    (column,) = (tmp_path / "s.h5.d" / "columns").iterdir()
    _flip(column, column.stat().st_size - 3)
    assert main(["store", "verify", str(store)]) == 2
    assert main(["store", "verify", str(store), "--repair"]) == 0, capsys.readouterr()
    assert verify_store(store) == []
    after = _rows(store)
    assert before[0] == after[0] and before[4] == after[4]
    for a, b in zip(before[1:4], after[1:4]):
        np.testing.assert_array_equal(a, b)
