"""``embedkit bench --labelling`` on a real labelled store: curves, resume, recommendation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from embedkit.rows import from_arrays
from tests.helpers import cli


@pytest.fixture
def store(tmp_path):
    X, y = make_blobs(300, 8, centers=3, cluster_std=4.0, random_state=0)
    splits = np.where(np.arange(300) % 3 == 0, "test", "train")
    from_arrays(tmp_path / "s.h5", X.astype(np.float32), y, splits=splits).close()
    return tmp_path / "s.h5"


def test_labelling_bench_writes_curves_and_resumes(store, tmp_path, capfd):
    out = tmp_path / "b"
    args = ("bench", str(store), "--labelling", "--strategies", "random,typical,margin",
            "--budgets", "1,3", "--seeds", "2", "--out", str(out))  # fmt: skip
    done = cli(capfd, *args)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "labelling.json").read_text())
    assert {(r["strategy"], r["head"], r["budget"]) for r in summary["table"]} == {
        (s, h, b)
        for s in ("random", "typical", "margin")
        for h in ("logreg", "spread")
        for b in (1, 3)
    }
    assert all(r["seeds"] == 2 and 0 <= r["mean"] <= 1 for r in summary["table"])
    assert set(summary["best"]) == {"1", "3"}
    assert (out / "labelling.png").stat().st_size > 0 and "typical + spread" in done.stdout
    stamp = (out / "runs" / "labelling__typical__s0.json").stat().st_mtime_ns
    again = cli(capfd, *args)  # everything done: nothing re-run
    assert again.returncode == 0 and "seed" not in again.stderr
    assert (out / "runs" / "labelling__typical__s0.json").stat().st_mtime_ns == stamp

    record = str(out / "labelling.json")
    picks = cli(capfd, "select", str(store), "--budget", "3", "--record", record,
                    "--out", str(tmp_path / "p.csv"))  # fmt: skip
    assert picks.returncode == 2 and "--budget 3" in picks.stderr  # every train row is labelled


def test_bad_budgets_are_one_line(store, tmp_path, capfd):
    done = cli(
        capfd, "bench", str(store), "--labelling", "--budgets", "1,x", "--out", str(tmp_path / "b")
    )
    assert done.returncode == 2 and "--budgets '1,x'" in done.stderr
    done = cli(
        capfd, "bench", str(store), "--labelling", "--budgets", "500", "--out", str(tmp_path / "c")
    )
    assert done.returncode == 2 and "the pool has 200" in done.stderr


def test_the_default_loop_runs_as_auto(store, tmp_path, capfd):
    """``--strategies auto``: select's own choice each round, typical at 1 label per class."""
    out = tmp_path / "b"
    done = cli(capfd, "bench", str(store), "--labelling", "--strategies", "typical,auto",
               "--heads", "logreg", "--budgets", "1,7", "--seeds", "1",
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    cell = {(r["strategy"], r["budget"]): r["mean"]
            for r in json.loads((out / "labelling.json").read_text())["table"]}  # fmt: skip
    assert cell["auto", 1] == cell["typical", 1]  # the same picks: auto is typical there
    assert ("auto", 7) in cell
