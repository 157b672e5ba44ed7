"""The HDF5 feature store: schema, round trips, cache semantics, crash-safe resume, reads."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from embedkit.errors import StoreError, StoreMismatchError, UserInputError
from embedkit.rows import from_arrays, split_rows
from embedkit.store import BatchShards, FeatureStore, Fingerprint, StoreWriter, TapInfo
from embedkit.store.txn.writer import journal_bad

TAPS = [TapInfo("pool", (4,), pooling="avg", stride=32, layer="head"), TapInfo("map", (2, 3, 3))]


def _fp(sha="a" * 64, dtype="float32", taps=TAPS, preprocess=None):
    return Fingerprint.create(sha, taps, preprocess or {"kind": "array", "input": "x"}, dtype)


def _items(n, start=0):
    rng = np.random.default_rng(start)
    ids = [f"item{i:04d}" for i in range(start, start + n)]
    feats = {
        "pool": rng.normal(size=(n, 4)).astype(np.float32),
        "map": rng.normal(size=(n, 2, 3, 3)).astype(np.float32),
    }
    digests = [hashlib.sha256(feats["pool"][i].tobytes()).hexdigest() for i in range(n)]
    labels = [["cat", "dog", "eel"][i % 3] for i in range(start, start + n)]
    return ids, digests, labels, feats


def _write(path, ids, digests, labels, feats, *, batch_size=4, fp=None, stop_after=None):
    w = StoreWriter(path, fp or _fp(), provenance={"provider": "CPUExecutionProvider"})
    todo = w.plan(ids, digests)
    todo_ids = [ids[i] for i in todo]
    done = w.begin(BatchShards(todo_ids, batch_size))
    written = 0
    for b, lo in enumerate(range(0, len(todo), batch_size)):
        if b in done:
            continue
        if stop_after is not None and written >= stop_after:
            w.close()
            return None  # "crash": no commit
        pos = todo[lo : lo + batch_size]
        w.write_batch(
            b,
            [ids[i] for i in pos],
            [digests[i] for i in pos],
            [labels[i] for i in pos],
            None,
            {k: v[pos] for k, v in feats.items()},
        )
        written += 1
    return w.commit()


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_round_trip_and_self_description(tmp_path):
    ids, digests, labels, feats = _items(10)
    summary = _write(tmp_path / "s.h5", ids, digests, labels, feats)
    assert (summary.n_added, summary.n_total) == (10, 10)
    with FeatureStore(tmp_path / "s.h5") as fs:
        assert len(fs) == 10 and fs.taps == ["pool", "map"]
        assert fs.ids().tolist() == ids
        np.testing.assert_array_equal(fs.features("pool"), feats["pool"])
        np.testing.assert_array_equal(fs.features("map", rows=[7, 2]), feats["map"][[7, 2]])
        assert fs.label_names == ["cat", "dog", "eel"]
        assert fs.labels().tolist() == [i % 3 for i in range(10)]
        info = fs.tap_info("pool")
        assert info.shape == (4,) and info.pooling == "avg" and info.stride == 32
        assert fs.features("map").shape == (10, *fs.tap_info("map").shape)
        prov = fs.provenance
        assert prov["schema_version"] == 2 and prov["backbone_sha256"] == "a" * 64
        assert prov["provider"] == "CPUExecutionProvider" and prov["created"]
        assert prov["preprocess"] == {"input": "x", "kind": "array"}
    assert not (tmp_path / "s.h5.d" / "journal").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5", "s.h5.d"]


def test_readable_by_plain_h5py_without_embedkit(tmp_path):
    ids, digests, labels, feats = _items(6)
    _write(tmp_path / "s.h5", ids, digests, labels, feats)
    code = f"""
import sys, json
sys.modules["embedkit"] = None  # embedkit is not importable here
import h5py
f = h5py.File({str(tmp_path / "s.h5")!r}, "r")
print(json.dumps({{
  "ids": [v.decode() for v in f["ids"][:]],
  "shape": list(f["features/map"].shape),
  "labels": f["labels"][:].tolist(),
  "names": [v.decode() for v in f["label_names"][:]],
  "sha": f.attrs["backbone_sha256"],
  "version": int(f.attrs["schema_version"]),
  "pooling": f["features/pool"].attrs["pooling"],
  "digest0": f["digests"][0].decode(),
}}))
"""
    out = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert out["ids"] == ids and out["shape"] == [6, 2, 3, 3]
    assert out["names"] == ["cat", "dog", "eel"] and out["labels"][:3] == [0, 1, 2]
    assert out["sha"] == "a" * 64 and out["version"] == 2 and out["pooling"] == "avg"
    assert out["digest0"] == digests[0]
    if shutil.which("h5ls"):
        listing = subprocess.check_output(["h5ls", "-r", str(tmp_path / "s.h5")], text=True)
        assert "/features/pool" in listing


def test_rerun_computes_nothing_and_leaves_file_untouched(tmp_path):
    ids, digests, labels, feats = _items(10)
    _write(tmp_path / "s.h5", ids, digests, labels, feats)
    before = _sha(tmp_path / "s.h5")
    with StoreWriter(tmp_path / "s.h5", _fp()) as w:
        assert len(w.plan(ids, digests)) == 0
        w.begin(BatchShards([], 4))
        assert w.commit().n_added == 0
    assert _sha(tmp_path / "s.h5") == before


def test_adding_items_computes_only_new_ones_in_order(tmp_path):
    ids, digests, labels, feats = _items(10)
    _write(
        tmp_path / "s.h5", ids[:6], digests[:6], labels[:6], {k: v[:6] for k, v in feats.items()}
    )
    with StoreWriter(tmp_path / "s.h5", _fp()) as w:
        assert w.plan(ids, digests).tolist() == [6, 7, 8, 9]
    summary = _write(tmp_path / "s.h5", ids, digests, labels, feats)
    assert (summary.n_added, summary.n_total) == (4, 10)
    with FeatureStore(tmp_path / "s.h5") as fs:
        assert fs.ids().tolist() == ids
        np.testing.assert_array_equal(fs.features("pool"), feats["pool"])
        assert len(fs.provenance["runs"]) == 2


def test_changed_item_is_recomputed_in_place(tmp_path):
    ids, digests, labels, feats = _items(8)
    _write(tmp_path / "s.h5", ids, digests, labels, feats)
    feats2 = {k: v.copy() for k, v in feats.items()}
    feats2["pool"][3] += 1
    digests2 = list(digests)
    digests2[3] = hashlib.sha256(feats2["pool"][3].tobytes()).hexdigest()
    summary = _write(tmp_path / "s.h5", ids, digests2, labels, feats2)
    assert (summary.n_added, summary.n_replaced, summary.n_total) == (0, 1, 8)
    with FeatureStore(tmp_path / "s.h5") as fs:
        np.testing.assert_array_equal(fs.features("pool"), feats2["pool"])
        assert fs.ids().tolist() == ids


@pytest.mark.parametrize(
    "change, field",
    [
        ({"sha": "b" * 64}, "backbone_sha256"),
        ({"taps": [TapInfo("pool", (4,), pooling="max"), TapInfo("map", (2, 3, 3))]}, "taps"),
        ({"preprocess": {"kind": "array", "input": "y"}}, "preprocess"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_other_fingerprint_is_refused_naming_the_field(tmp_path, change, field):
    ids, digests, labels, feats = _items(5)
    _write(tmp_path / "s.h5", ids, digests, labels, feats)
    before = _sha(tmp_path / "s.h5")
    with pytest.raises(StoreMismatchError, match=field) as err:
        StoreWriter(tmp_path / "s.h5", _fp(**change))
    assert err.value.field == field and "\n" not in str(err.value)
    assert _sha(tmp_path / "s.h5") == before


def test_resume_after_crash_equals_uninterrupted_run(tmp_path):
    ids, digests, labels, feats = _items(23)
    _write(tmp_path / "full.h5", ids, digests, labels, feats)
    assert _write(tmp_path / "r.h5", ids, digests, labels, feats, stop_after=3) is None
    assert not (tmp_path / "r.h5").exists()
    assert len(list((tmp_path / "r.h5.d" / "journal").glob("*.h5"))) == 3
    with StoreWriter(tmp_path / "r.h5", _fp()) as w:
        assert w.begin(BatchShards([ids[i] for i in w.plan(ids, digests)], 4)) == {0, 1, 2}
    _write(tmp_path / "r.h5", ids, digests, labels, feats)
    with FeatureStore(tmp_path / "full.h5") as a, FeatureStore(tmp_path / "r.h5") as b:
        assert a.ids().tolist() == b.ids().tolist()
        for tap in a.taps:
            assert np.array_equal(a.features(tap), b.features(tap))
        assert a.labels().tolist() == b.labels().tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.h5", "full.h5.d", "r.h5", "r.h5.d"]
    listing = sorted(p.name for p in (tmp_path / "r.h5.d").iterdir())
    assert listing == ["columns", "lock", "shards", "versions"]


def test_journal_with_other_fingerprint_is_refused(tmp_path):
    ids, digests, labels, feats = _items(9)
    _write(tmp_path / "r.h5", ids, digests, labels, feats, stop_after=1)
    with StoreWriter(tmp_path / "r.h5", _fp(sha="c" * 64)) as w:
        with pytest.raises(StoreMismatchError, match="backbone_sha256"):
            w.begin(BatchShards(ids, 4))


def test_second_writer_is_locked_out(tmp_path):
    import os

    ids, digests, labels, feats = _items(4)
    w1 = StoreWriter(tmp_path / "s.h5", _fp())
    w1.begin(BatchShards(ids, 2))
    # The lock is taken before the store is read: the second writer never gets that far.
    with pytest.raises(StoreError, match=f"another embedkit process \\(pid {os.getpid()}"):
        StoreWriter(tmp_path / "s.h5", _fp(), timeout=0.2)
    w1.close()
    StoreWriter(tmp_path / "s.h5", _fp(), timeout=0.2).close()


def test_duplicate_ids_and_bad_shapes_are_user_errors(tmp_path):
    w = StoreWriter(tmp_path / "s.h5", _fp())
    with pytest.raises(UserInputError, match="'x' occurs twice"):
        w.plan(["x", "y", "x"], ["0" * 64] * 3)
    w.begin(BatchShards(["a"], 1))
    with pytest.raises(UserInputError, match="tap 'pool' gave shape"):
        w.write_batch(
            0,
            ["a"],
            ["0" * 64],
            None,
            None,
            {"pool": np.zeros((1, 5)), "map": np.zeros((1, 2, 3, 3))},
        )
    w.close()


def test_bad_items_are_recorded_and_not_retried(tmp_path):
    ids, digests, labels, feats = _items(4)
    w = StoreWriter(tmp_path / "s.h5", _fp())
    w.plan(ids, digests)
    w.begin(BatchShards(ids, 4))
    keep = [0, 1, 3]
    w.write_batch(
        0,
        [ids[i] for i in keep],
        [digests[i] for i in keep],
        None,
        None,
        {k: v[keep] for k, v in feats.items()},
    )
    w.record_bad(ids[2], digests[2], "cannot decode image")
    assert w.commit().n_bad == 1
    with FeatureStore(tmp_path / "s.h5") as fs:
        assert fs.bad_items() == [{"id": ids[2], "reason": "cannot decode image"}]
        assert len(fs) == 3 and not fs.has_labels
    with StoreWriter(tmp_path / "s.h5", _fp()) as w:
        assert len(w.plan(ids, digests)) == 0


def test_bad_items_journaled_by_workers_commit_in_batch_order(tmp_path):
    """``journal_bad`` files (one per batch, from worker processes) join ``bad.jsonl``."""
    ids, digests, _, feats = _items(6)
    w = StoreWriter(tmp_path / "s.h5", _fp())
    w.plan(ids, digests)
    w.begin(BatchShards(ids, 2))
    for b in (10, 2):  # written out of order, numbered past 9: committed by batch number
        journal_bad(w.journal, b, [(ids[b % 6], digests[b % 6], f"bad in batch {b}")])
    w.record_bad(ids[0], digests[0], "recorded by the driver")
    w.write_batch(0, ids[1:2], digests[1:2], None, None, {k: v[1:2] for k, v in feats.items()})
    assert w.commit().n_bad == 3
    with FeatureStore(tmp_path / "s.h5") as fs:
        assert [r["reason"] for r in fs.bad_items()] == [
            "recorded by the driver",
            "bad in batch 2",
            "bad in batch 10",
        ]


def test_float16_storage_halves_bytes(tmp_path):
    X = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float16)
    with from_arrays(tmp_path / "h.h5", X) as fs:
        assert fs.tap_info().dtype == "float16"
        out = fs.features()
        assert out.dtype == np.float32 and np.array_equal(out, X.astype(np.float32))
        assert fs.features(dtype=None).dtype == np.float16


@pytest.mark.parametrize("memory_limit", [1 << 30, 0])
def test_iter_batches_covers_every_row_once(tiny_store, tiny_data, memory_limit):
    X, y = tiny_data
    with FeatureStore(tiny_store) as fs:
        kw = dict(shuffle=True, seed=3, memory_limit=memory_limit, block_rows=16, buffer_blocks=2)
        batches = list(fs.iter_batches(32, **kw))
        again = list(fs.iter_batches(32, **kw))
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    assert len(xs) == len(X) and all(len(b[0]) <= 32 for b in batches)
    order = np.lexsort(xs.T[::-1])
    ref = np.lexsort(X.T[::-1])
    np.testing.assert_array_equal(xs[order], X[ref])
    np.testing.assert_array_equal(ys[order], y[ref])  # labels stay aligned with rows
    assert not np.array_equal(xs, X)  # shuffled
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))  # seeded


def test_split_respects_stored_column_and_is_stratified(tiny_store, tiny_data):
    _, y = tiny_data
    with FeatureStore(tiny_store) as fs:
        parts = split_rows(fs, val=0.1, seed=1)
        assert fs.splits()[parts["test"]].tolist() == ["test"] * len(parts["test"])
        assert len(parts["val"]) == 21  # 10% of the 210 train rows (never of the test rows)
        assert set(parts["val"]).isdisjoint(parts["train"])
        assert set(parts["train"]) | set(parts["val"]) == set(
            np.flatnonzero(fs.splits() == "train")
        )
        fresh = split_rows(fs, val=0.2, test=0.2, seed=0, use_stored=False)
        assert sum(len(v) for v in fresh.values()) == len(y)
        for part in fresh.values():  # stratified: class shares within 5 points of the whole
            share = np.bincount(y[part], minlength=3) / len(part)
            assert np.abs(share - np.bincount(y) / len(y)).max() < 0.05
        assert all(
            np.array_equal(fresh[k], split_rows(fs, val=0.2, test=0.2, use_stored=False)[k])
            for k in fresh
        )


def test_reader_errors_name_the_file_or_tap(tmp_path, tiny_store):
    with pytest.raises(StoreError, match="no such store"):
        FeatureStore(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(StoreError, match="junk.h5"):
        FeatureStore(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1]
    with pytest.raises(StoreError, match="not an embedkit feature store"):
        FeatureStore(tmp_path / "other.h5")
    with (
        FeatureStore(tiny_store) as fs,
        pytest.raises(UserInputError, match="its taps are: features"),
    ):
        fs.features("nope")
    X = np.zeros((3, 2), np.float32)
    with (
        from_arrays(tmp_path / "nolab.h5", X) as fs,
        pytest.raises(StoreError, match="no labels"),
    ):
        fs.labels()


def test_torch_dataset_adapter(tiny_store, tiny_data):
    torch = pytest.importorskip("torch")
    with FeatureStore(tiny_store) as fs:
        ds = fs.torch_dataset(rows=[0, 5])
    x, y = ds[1]
    assert isinstance(x, torch.Tensor) and torch.equal(x, torch.from_numpy(tiny_data[0][5]))
    assert int(y) == tiny_data[1][5]


@pytest.mark.parametrize("n_asked", [40, 2500])  # digests read row by row, or whole columns
def test_plan_finds_changed_items_across_shards(tmp_path, n_asked):
    from tests.store import _worker as W

    store = tmp_path / "s.h5"
    for start in range(0, 3000, 1000):
        W.add(store, start, 1000)  # three shards
    ids, digests, _, _ = W.rows(0, 3000)
    changed = {5, 999, 1000, 2998}
    digests = [("f" * 64 if k in changed else d) for k, d in enumerate(digests)]
    asked = sorted(set(range(0, 3000, 3000 // n_asked)[:n_asked]) | changed)
    with StoreWriter(store, W.FP) as w:
        todo = w.plan([ids[k] for k in asked], [digests[k] for k in asked])
    assert sorted(asked[i] for i in todo.tolist()) == sorted(changed)
