"""Faults with real subprocesses: concurrent writers, readers during commits, SIGKILL at
named commit steps, and a full disk (a 5 MB tmpfs, when mounting is allowed).

CI-sized trial counts; benchmarks/bench_store.py runs the full counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from embedkit.errors import StoreError
from embedkit.store import FeatureStore
from embedkit.store.maintain.versions import unnamed_files, vacuum
from tests.store import _worker as W

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker(*args, env=None, **kw) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": REPO, **(env or {})}
    command = [sys.executable, "-m", "tests.store._worker", *map(str, args)]
    return subprocess.Popen(
        command, cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def assert_clean(store, n: int, ordered: bool = True) -> None:
    """The store holds rows 0..n-1, each right, and nothing but its shards and lock."""
    with FeatureStore(store) as fs:
        ids = fs.ids().tolist()
        expected = [f"i{k:07d}" for k in range(n)]
        assert (ids if ordered else sorted(ids)) == expected
        assert W.check(fs) == 0
        assert fs.labels().tolist() == [int(i[1:]) % 3 for i in ids]
        n_shards = fs.n_shards
    folder = store.parent / (store.name + ".d")
    assert sorted(p.name for p in folder.iterdir()) == ["columns", "lock", "shards", "versions"]
    vacuum(store, yes=True)  # what killed writers left (no version names it), older versions
    assert not unnamed_files(store)
    assert len(list((folder / "shards").iterdir())) == n_shards
    assert not list(store.parent.glob("*.tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_two_writers_and_a_split_lose_no_rows(tmp_path, trial):
    store = tmp_path / "s.h5"
    W.add(store, 0, 3000)
    procs = [worker("add", store, 3000, 500), worker("extract", store, 3500, 500, 64)]
    split = subprocess.run(
        [sys.executable, "-m", "embedkit", "split", str(store), "--force", "--wait", "60"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
    )  # fmt: skip
    results = [finish(p) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), results
    # split either ran between commits or refused cleanly (rows changed under it)
    assert split.returncode == 0 or (split.returncode == 2 and "Traceback" not in split.stderr), (
        split.stderr
    )
    assert_clean(store, 4000, ordered=False)  # the writers' order is the lock's


def test_a_second_writer_waits_then_is_refused_naming_the_pid(tmp_path):
    store = tmp_path / "s.h5"
    W.add(store, 0, 10)
    holder = worker("extract", store, 10, 10, 5, env={"EMBEDKIT_TEST_CRASH_AT": "never"})
    holder.kill()  # a writer killed while holding nothing leaves nothing behind
    holder.wait()
    code = (
        "import sys, time; from tests.store import _worker as W; "
        "from embedkit.store import StoreWriter; w = StoreWriter(sys.argv[1], W.FP); "
        "print('locked', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(store)], cwd=REPO, env=env, stdout=subprocess.PIPE
    )
    assert proc.stdout.readline().strip() == b"locked"
    with pytest.raises(StoreError, match=rf"pid {proc.pid}, extracting since .* waited 0.3 s"):
        W.add(store, 10, 5, timeout=0.3)
    proc.send_signal(signal.SIGKILL)  # a stale lock: the OS released it with the process
    proc.wait()
    W.add(store, 10, 5, timeout=5)
    assert_clean(store, 15)


STEPS = ["batch-2", "shards-written", "index-written", "before-journal-removed"]


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_a_named_commit_step_then_rerun_is_identical(tmp_path, step):
    reference = tmp_path / "ref.h5"
    W.add(reference, 0, 200)
    W.extract(reference, 0, 500, 50)
    store = tmp_path / "s.h5"
    W.add(store, 0, 200)
    rc, _, err = finish(worker("extract", store, 0, 500, 50, env={"EMBEDKIT_TEST_CRASH_AT": step}))
    assert rc == -signal.SIGKILL, err
    with FeatureStore(store) as fs:  # the store readers see is complete: old or new
        assert len(fs) in (200, 500) and W.check(fs) == 0
    rc, _, err = finish(worker("extract", store, 0, 500, 50))
    assert rc == 0, err
    assert_clean(store, 500)
    with FeatureStore(store) as a, FeatureStore(reference) as b:
        assert np.array_equal(a.features(), b.features())  # bit for bit


@pytest.mark.slow
def test_kill_during_upgrade_and_compaction(tmp_path):
    from tests.store.test_store_v2 import write_v1

    v1 = tmp_path / "v1.h5"
    x = write_v1(v1)
    code = "import sys; from embedkit.store import upgrade; upgrade(sys.argv[1])"
    before = v1.read_bytes()
    for step in ("upgrade-copied", "version-written"):  # before and after version 1 exists
        env = {**os.environ, "PYTHONPATH": REPO, "EMBEDKIT_TEST_CRASH_AT": step}
        proc = subprocess.run([sys.executable, "-c", code, str(v1)], cwd=REPO, env=env)
        assert proc.returncode == -signal.SIGKILL
        assert v1.read_bytes() == before  # the old file stays until the last rename
    proc = subprocess.run([sys.executable, "-c", code, str(v1)], cwd=REPO)
    assert proc.returncode == 0
    with FeatureStore(v1) as fs:
        assert fs.provenance["schema_version"] == 2 and np.array_equal(fs.features(), x)
    store = tmp_path / "s.h5"
    for start in range(0, 40, 10):
        W.add(store, start, 10)
    rc, _, err = finish(worker("compact", store, env={"EMBEDKIT_TEST_CRASH_AT": "compacted-shard"}))
    assert rc == -signal.SIGKILL, err
    W.add(store, 40, 5)  # the orphan compacted shard stays: assert_clean vacuums it
    assert_clean(store, 45)


@pytest.mark.slow
def test_readers_keep_their_view_until_refresh_during_commits(tmp_path):
    store = tmp_path / "s.h5"
    W.add(store, 0, 2000)
    readers = [worker("poll", store, 6) for _ in range(2)]
    for k in range(5):
        W.add(store, 2000 + 100 * k, 100)
        W.add(store, 100 * k, 50, k + 1)  # replaced rows
    W.main(["compact", str(store)])
    results = [finish(p) for p in readers]
    import json

    for rc, out, err in results:
        assert rc == 0, err
        stats = json.loads(out)
        assert stats["wrong"] == 0 and stats["changed_without_refresh"] == 0
        assert stats["reads"] > 3


@pytest.fixture
def tmpfs(tmp_path):
    """A 5 MB tmpfs (root only); skipped with the reason where mounting is refused."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("disk-full tests mount a tmpfs and need root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _fill_disk(path) -> None:
    """Write ``path`` until the file system is full (unbuffered: nothing left to flush
    when the file is closed)."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass


@pytest.mark.parametrize("phase", ["begin", "journal", "commit"])
def test_disk_full_is_one_line_keeps_the_store_and_resumes(tmpfs, monkeypatch, phase):
    monkeypatch.setattr(W, "DIM", 1024)  # 4 KB per row
    monkeypatch.setattr(W, "FP", W.Fingerprint.create("a", [W.TapInfo("pool", (1024,))], {}))
    store = tmpfs / "s.h5"
    W.extract(store, 0, 200, 50)  # 0.8 MB
    before = store.read_bytes()
    filler = tmpfs / "filler"
    if phase == "begin":  # the pending shard of the 400 new rows (1.6 MB) cannot fit
        filler.write_bytes(b"\0" * int(3.6e6))
    at = {"begin": None, "journal": 3, "commit": "commit"}[phase]
    with pytest.raises(StoreError) as err:
        W.extract(store, 0, 600, 50, hook=lambda step: step == at and _fill_disk(filler))
    message = str(err.value)
    assert "\n" not in message and "not enough disk space" in message and "MB" in message
    assert str(tmpfs) in message
    journal = tmpfs / "s.h5.d" / "journal"
    logs = [line for p in journal.glob("*.done") for line in p.read_text().splitlines()]
    assert len(logs) == {"begin": 0, "journal": 3, "commit": 8}[phase]
    assert store.read_bytes() == before
    with FeatureStore(store) as fs:
        assert len(fs) == 200 and W.check(fs) == 0
    filler.unlink()
    W.extract(store, 0, 600, 50)
    assert_clean(store, 600)


def test_an_extract_commit_needs_the_new_rows_once_not_twice(tmpfs, monkeypatch):
    """2.0 MB free: 400 new rows (1.6 MB) fit once; a journal plus a merged copy would not."""
    monkeypatch.setattr(W, "DIM", 1024)  # 4 KB per row
    monkeypatch.setattr(W, "FP", W.Fingerprint.create("a", [W.TapInfo("pool", (1024,))], {}))
    store = tmpfs / "s.h5"
    W.extract(store, 0, 200, 50)  # 0.8 MB
    (tmpfs / "filler").write_bytes(b"\0" * int(2.2e6))
    W.extract(store, 0, 600, 50)
    assert_clean(store, 600)
