"""Crash safety end to end: SIGKILL a real ``embedkit extract`` and run it again.

The killed run leaves the store as it was (or absent) and a journal of finished
batches; the re-run resumes from the journal and the final store equals an
uninterrupted run's store bit for bit, with no journal or temp files left behind.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from embedkit.extract import extract
from embedkit.store import FeatureStore
from embedkit.store.maintain.versions import unnamed_files
from tests.extract.extract_graphs import REPO, journaled_batches, make_slow_model, run_cli

N_ITEMS, BATCH, DIM = 480, 8, 768
N_BATCHES = N_ITEMS // BATCH


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A slow array model, its data, and the store of one uninterrupted run."""
    root = tmp_path_factory.mktemp("crash")
    model = make_slow_model(root / "slow.onnx", dim=DIM, depth=32)
    np.save(root / "x.npy", np.random.default_rng(0).normal(size=(N_ITEMS, DIM)).astype("f4"))
    reference = root / "reference.h5"
    extract(model, root / "x.npy", reference, batch_size=BATCH, progress=False)
    with FeatureStore(reference) as fs:
        return root, model, fs.ids(), fs.features()


def _command(model, data, out) -> list[str]:
    args = [model, data, "--out", out, "--batch-size", BATCH, "--device", "cpu"]
    return [sys.executable, "-m", "embedkit", "extract", *map(str, args)]


def _kill_after(command: list[str], journal, n_batches: int) -> int:
    """Start ``command`` and SIGKILL it once ``journal`` holds ``n_batches`` batches."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen = journaled_batches(journal)
        if seen >= n_batches:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before {n_batches} batches"
    return seen


def _sha(path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _assert_equals_reference(out, ids, features) -> None:
    with FeatureStore(out) as fs:
        assert np.array_equal(fs.ids(), ids)
        assert np.array_equal(fs.features(), features)  # bit for bit
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(out.name + ".")]
    assert leftovers == [out.name + ".d"]  # the shard folder: no temp files beside the store
    folder = out.parent / (out.name + ".d")
    listing = sorted(p.name for p in folder.iterdir())
    assert listing == ["columns", "lock", "shards", "versions"]  # no journal
    assert not unnamed_files(out)  # no shard or column file that no version names


@pytest.mark.parametrize("kill_after", [1, N_BATCHES // 3, N_BATCHES - 6])
def test_killed_fresh_run_resumes_bit_identical(setup, tmp_path, kill_after):
    root, model, ids, features = setup
    out = tmp_path / "f.h5"
    command = _command(model, root / "x.npy", out)
    seen = _kill_after(command, tmp_path / "f.h5.d" / "journal", kill_after)
    assert not out.exists()  # nothing committed: readers never see half a store
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    resumed = int(result.stdout.split(" resumed")[0].rsplit(" ", 1)[1])
    assert resumed >= seen * BATCH  # journaled batches were not recomputed
    assert f"computed {N_ITEMS - resumed} items" in result.stdout
    _assert_equals_reference(out, ids, features)


def test_killed_incremental_run_leaves_store_then_resumes(setup, tmp_path):
    root, model, ids, features = setup
    out = tmp_path / "f.h5"
    half = N_ITEMS // 2
    extract(model, root / "x.npy", out, batch_size=BATCH, limit=half, progress=False)
    before = _sha(out)
    command = _command(model, root / "x.npy", out)
    _kill_after(command, tmp_path / "f.h5.d" / "journal", N_BATCHES // 4)
    assert _sha(out) == before  # the existing store is untouched by the killed run
    result = run_cli(*command[3:])
    assert result.returncode == 0, result.stderr
    assert f"{half} cached" in result.stdout
    _assert_equals_reference(out, ids, features)
    again = run_cli(*command[3:])
    assert f"computed 0 items, {N_ITEMS} cached" in again.stdout
    _assert_equals_reference(out, ids, features)
