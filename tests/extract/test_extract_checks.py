"""Non-finite features never reach the store; non-UTF-8 names round-trip; text line rules."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from embedkit.errors import UserInputError
from embedkit.extract import extract
from embedkit.extract.sources import id_from_name, name_from_id, split_lines
from embedkit.store import FeatureStore
from tests.extract.extract_graphs import make_log_model
from tests.helpers import cli


def test_nonfinite_batch_fails_and_earlier_batches_resume(tmp_path, capfd):
    model = make_log_model(tmp_path / "log.onnx")
    x = np.abs(np.random.default_rng(0).normal(size=(10, 6))).astype(np.float32) + 1
    bad = x.copy()
    bad[7, 2] = -1.0  # log(-1) = NaN in batch 3 (batch size 2)
    np.save(tmp_path / "x.npy", bad)
    out = tmp_path / "f.h5"
    args = ["extract", model, tmp_path / "x.npy", "--out", out, "--batch-size", "2",
            "--workers", "1"]  # fmt: skip
    result = cli(capfd, *args)
    assert result.returncode == 2, result.stderr
    assert "x.npy: row 7: the model's output for tap 'y' holds NaN" in result.stderr
    assert not out.exists()  # nothing committed
    journaled = set()  # the ids of the journaled rows (the pending shard's done log)
    for log in (tmp_path / "f.h5.d" / "journal").glob("*.done"):
        with h5py.File(log.with_suffix(".part"), "r") as f:
            ids = [i.decode() for i in f["ids"][:]]
        for line in log.read_text().splitlines():
            journaled |= {ids[r] for r in json.loads(line)["rows"]}
    assert {"0", "1", "2", "3", "4", "5"} <= journaled  # batches 0-2
    assert not {"6", "7"} & journaled  # the batch with NaN was never journaled
    np.save(tmp_path / "x.npy", x)  # fixed: row 7 changes, rows 0-5 do not
    result = cli(capfd, *args)
    assert result.returncode == 0, result.stderr
    assert "6 resumed" in result.stdout  # earlier batches were not recomputed
    with FeatureStore(out) as fs:
        np.testing.assert_allclose(fs.features(), np.log(x), rtol=1e-6)


def test_skip_bad_records_nonfinite_rows(tmp_path):
    model = make_log_model(tmp_path / "log.onnx")
    x = np.ones((5, 6), np.float32)
    x[1, 0], x[3, 5] = 0.0, -2.0
    np.save(tmp_path / "x.npy", x)
    summary = extract(model, tmp_path / "x.npy", tmp_path / "f.h5", skip_bad=True, progress=False)
    assert summary.n_bad == 2 and summary.n_total == 3
    with FeatureStore(tmp_path / "f.h5") as fs:
        assert fs.ids().tolist() == ["0", "2", "4"]
        assert [b["id"] for b in fs.bad_items()] == ["1", "3"]
    again = extract(model, tmp_path / "x.npy", tmp_path / "f.h5", skip_bad=True, progress=False)
    assert again.n_computed == 0  # bad rows with the same content are not retried


@pytest.mark.parametrize(
    "raw",
    [b"plain.png", b"caf\xe9.png", b"a\\b.png", b"a\\xff.png", b"\xff\\x41\\\\.png", b"\xc3"],
)
def test_file_name_ids_are_utf8_and_reversible(raw):
    item_id = id_from_name(os.fsdecode(raw))
    item_id.encode("utf-8")  # storable as HDF5 UTF-8
    assert name_from_id(item_id) == raw
    if b"\\" not in raw and raw.decode("utf-8", "ignore").encode() == raw:
        assert item_id == raw.decode()  # valid names are their own id


def test_distinct_names_give_distinct_ids():
    names = [b"a\\xff", b"a\xff", b"a\\\\xff", b"a\\\xff"]
    ids = {id_from_name(os.fsdecode(n)) for n in names}
    assert len(ids) == len(names)


def test_split_lines_only_at_newline():
    assert split_lines("a\r\nb\u2028c\x0cd\x85e\rf\n") == ["a", "b\u2028c\x0cd\x85e\rf"]
    assert split_lines("a\n\nb") == ["a", "", "b"]
    assert split_lines("") == []


def test_external_data_outside_folder_is_refused_before_reading(tmp_path):
    from tests.reliability.cases_models import _external_model

    (tmp_path / "m").mkdir()
    data, _ = _external_model("/dev/zero")  # reading it would never end
    (tmp_path / "m" / "model.onnx").write_bytes(data)
    from embedkit.extract import load_model

    with pytest.raises(UserInputError, match=r"model.onnx: external data location '/dev/zero'"):
        load_model(tmp_path / "m" / "model.onnx")
