"""`store log`, `store vacuum` and `info`'s version line, through the real CLI on a real store."""

from __future__ import annotations

import numpy as np

from embedkit.rows import from_arrays
from embedkit.store import FeatureStore, set_splits
from tests.helpers import cli


def _store(tmp_path):
    path = tmp_path / "s.h5"
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    from_arrays(path, x, [0, 1, 0, 1, 0, 1]).close()
    set_splits(path, ["train"] * 4 + ["test"] * 2)
    set_splits(path, ["train"] * 2 + ["test"] * 4)
    return path


def test_log_lists_each_version_and_older_versions_stay_readable(tmp_path, capsys):
    path = _store(tmp_path)
    out = cli(capsys, "store", "log", path)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert [r[2] for r in rows] == ["extract", "split", "split"]
    with FeatureStore(path, version=2) as old, FeatureStore(path) as new:
        assert list(old.splits()) == ["train"] * 4 + ["test"] * 2
        assert list(new.splits()) == ["train"] * 2 + ["test"] * 4


def test_info_says_what_vacuum_frees_and_vacuum_asks_before_removing(tmp_path, capsys):
    path = _store(tmp_path)
    info = cli(capsys, "info", path).stdout
    line = next(x for x in info.splitlines() if x.strip().startswith("versions:"))
    assert line.split()[1] == "3" and "store vacuum" in line

    dry = cli(capsys, "store", "vacuum", path)
    assert dry.returncode == 0 and "would remove" in dry.stdout and "--yes" in dry.stdout
    assert [r["version"] for r in _log(capsys, path)] == [1, 2, 3]  # nothing removed

    done = cli(capsys, "store", "vacuum", path, "--keep", "2", "--yes")
    assert done.returncode == 0 and "removed" in done.stdout
    assert [r["version"] for r in _log(capsys, path)] == [2, 3]
    with FeatureStore(path, version=2) as fs:
        assert len(fs) == 6
    cli(capsys, "store", "vacuum", path, "--yes")
    info = cli(capsys, "info", path).stdout
    assert "versions: 1 " in info and "0.0 MB held only by older versions" in info


def _log(capsys, path):
    import json

    out = cli(capsys, "store", "log", path, "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]  # one JSON line each
