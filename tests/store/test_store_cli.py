"""`embedkit info` and `embedkit split` on real stores, and their one-line errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from embedkit.rows import from_arrays
from embedkit.store import FeatureStore
from tests.helpers import cli, run_cli


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_info_prints_schema_counts_taps_and_provenance(tiny_store, tiny_data, capfd):
    result = cli(capfd, "info", str(tiny_store))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "300 items" in out and "schema v2" in out
    assert "features" in out and "(16,)" in out
    assert "a=" in out and "train=210" in out and "test=90" in out
    info = json.loads(cli(capfd, "info", str(tiny_store), "--json").stdout)
    assert info["items"] == 300 and info["taps"][0]["shape"] == [16]
    assert list(info["labels"].values()) == np.bincount(tiny_data[1]).tolist()
    assert info["backbone_sha256"] == "arrays" and info["size_bytes"] > 300 * 16 * 4


def test_split_writes_a_stratified_split_and_refuses_to_overwrite(tmp_path, tiny_data, capfd):
    X, y = tiny_data
    path = tmp_path / "s.h5"
    from_arrays(path, X, y).close()
    result = cli(capfd, "split", str(path), "--test", "0.2", "--val", "0.1")
    assert result.returncode == 0, result.stderr
    with FeatureStore(path) as fs:
        s = fs.splits()
        # val is 10% of the 240 train rows, not of the store
        assert (s == "test").sum() == 60 and (s == "val").sum() == 24 and (s == "").sum() == 0
        for name in ("train", "val", "test"):
            share = np.bincount(y[s == name], minlength=3) / (s == name).sum()
            assert np.abs(share - np.bincount(y) / len(y)).max() < 0.02  # stratified
    before = _sha(path)
    again = cli(capfd, "split", str(path), "--test", "0.3")
    assert again.returncode != 0 and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    assert _sha(path) == before
    moved = cli(capfd, "split", str(path), "--test", "0.3", "--force")  # would move test items
    assert moved.returncode == 2 and "--retest" in moved.stderr and _sha(path) == before
    assert len(moved.stderr.strip().splitlines()) == 1
    assert cli(capfd, "split", str(path), "--test", "0.3", "--retest").returncode == 0
    with FeatureStore(path) as fs:
        assert (fs.splits() == "test").sum() == 90


def test_split_force_redraws_val_from_train_and_keeps_the_stored_test_rows(
    tmp_path, tiny_data, capfd
):
    X, y = tiny_data
    path = tmp_path / "s.h5"
    stored = np.where(np.arange(len(y)) % 10 < 7, "train", "test")  # 210 train / 90 test
    from_arrays(path, X, y, splits=stored).close()
    result = cli(capfd, "split", str(path), "--val", "0.1", "--force")
    assert result.returncode == 0, result.stderr
    assert "test=90" in result.stdout and "90 test rows kept" in result.stdout
    with FeatureStore(path) as fs:
        s = fs.splits()
    assert np.array_equal(s == "test", stored == "test")  # not one test item moved
    assert (s == "val").sum() == 21 and (s == "train").sum() == 189  # 10% of train
    assert set(np.flatnonzero(s == "val")) <= set(np.flatnonzero(stored == "train"))


def test_errors_are_one_line_with_exit_code_and_debug_shows_traceback(tmp_path):
    missing = tmp_path / "nope.h5"
    result = run_cli("info", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"embedkit info: error: {missing}: no such store; create it with `embedkit extract`"
    ]
    junk = tmp_path / "junk.h5"
    junk.write_text("not a store")
    result = run_cli("split", str(junk))
    assert (
        result.returncode == 2 and "junk.h5" in result.stderr and "Traceback" not in result.stderr
    )
    assert junk.read_text() == "not a store"
    debug = run_cli("--debug", "info", str(missing))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_python_dash_m_and_console_script_agree():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("embedkit ")
