"""The Ray engine on a real two-node local Ray cluster (loopback, 1 CPU per node).

Every store the Ray engine writes is compared with a local ``extract`` of the same source:
every dataset and attribute of the index, except the timestamps and the run log. The
faults are real: an actor process and a driver process are SIGKILLed mid-run.

One cluster serves the whole module (starting Ray takes seconds): a head node and one
worker node of one CPU each, so the two actors of a run live on different raylets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from embedkit.errors import StoreMismatchError, UserInputError
from embedkit.extract import extract, load_model
from embedkit.store import FeatureStore
from embedkit.store.maintain.versions import unnamed_files
from tests.extract.extract_graphs import REPO, make_slow_model, run_cli, write_images

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

N_SLOW, BATCH, DIM = 320, 8, 512
_TIMES = {"created", "updated", "runs", "committed"}  # the run record: times, what each did
# which shard files hold the rows: a local run links its journal's one pending shard (bad
# items' rows left unwritten), Ray merges its batch shards; the rows they give are the same
_LAYOUT = {"_store/shards", "_store/rowmap"}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """A model of about 2 ms per item, its data, and a local extract's store."""
    root = tmp_path_factory.mktemp("slow")
    model = make_slow_model(root / "slow.onnx", dim=DIM, depth=24)
    np.save(root / "x.npy", np.random.default_rng(1).normal(size=(N_SLOW, DIM)).astype("f4"))
    extract(model, root / "x.npy", root / "local.h5", batch_size=BATCH, progress=False)
    return model, root / "x.npy", root / "local.h5"


def _walk(path: Path) -> dict[str, object]:
    """Every dataset's values and every attribute of the index, by HDF5 path."""
    found: dict[str, object] = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            for key, value in obj.attrs.items():
                if key not in _TIMES:
                    found[f"{name}@{key}"] = value
            if isinstance(obj, h5py.Dataset) and name not in _LAYOUT:
                found[name] = obj[()]  # virtual datasets read through the shards

        visit("/", f)
        f.visititems(visit)
    return found


def assert_same_store(ray_store: Path, local_store: Path) -> None:
    """Same datasets, values and attributes (bar times); no debris beside the store."""
    got, want = _walk(ray_store), _walk(local_store)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert np.array_equal(np.asarray(got[key]), np.asarray(value)), key
    assert {"ids", "features/" + _first_tap(local_store)} <= set(want)
    folder = ray_store.parent / (ray_store.name + ".d")
    beside = sorted(p.name for p in ray_store.parent.iterdir() if p.name.startswith(ray_store.name))
    assert beside == [ray_store.name, folder.name]  # no temporary files
    assert sorted(p.name for p in folder.iterdir()) == ["columns", "lock", "shards", "versions"]
    assert not unnamed_files(ray_store)  # no journal left, no shard that no version names


def _first_tap(store: Path) -> str:
    with FeatureStore(store) as fs:
        return fs.tap_info().name


def _sources(models, tmp: Path) -> dict[str, tuple]:
    """(model, source, options) for images (with an undecodable file), text and arrays."""
    images = tmp / "images"
    write_images(images, per_class=5)
    (images / "dog" / "broken.png").write_bytes(b"not a png")
    text = tmp / "t.jsonl"
    words = ["the cat sat", "red dog ran fast", "a big mat", "small blue cat", "dog on mat"]
    text.write_text(
        "".join(f'{{"text": "{w}", "label": "{i % 2}"}}\n' for i, w in enumerate(words))
    )
    arrays = tmp / "x.npy"
    np.save(arrays, np.random.default_rng(5).normal(size=(11, 6)).astype(np.float32))
    np.save(tmp / "y.npy", np.arange(11) % 3)
    return {
        "images": (models["image"], images, {"skip_bad": True}),
        "text": (models["text"], text, {"split": "train"}),
        "arrays": (models["array"], arrays, {"labels": tmp / "y.npy", "dtype": "float16"}),
    }


@pytest.mark.parametrize("kind", ["images", "text", "arrays"])
def test_ray_store_equals_local_store(cluster, models, tmp_path, kind):
    model, source, options = _sources(models, tmp_path)[kind]
    local = extract(model, source, tmp_path / "local.h5", batch_size=2, progress=False, **options)
    got = extract(
        model, source, tmp_path / "ray.h5", batch_size=2, progress=False, engine="ray", **options
    )
    assert (got.n_computed, got.n_bad, got.n_total) == (
        local.n_computed,
        local.n_bad,
        local.n_total,
    )
    assert got.n_bad == (1 if kind == "images" else 0)
    assert got.provider == "CPUExecutionProvider"
    assert_same_store(tmp_path / "ray.h5", tmp_path / "local.h5")
    again = extract(
        model, source, tmp_path / "ray.h5", batch_size=2, progress=False, engine="ray", **options
    )
    assert again.n_computed == 0 and again.n_cached == local.n_items  # bad ones too


def test_ray_refuses_another_model_and_bad_items(cluster, models, tmp_path):
    images = write_images(tmp_path / "images")
    out = tmp_path / "f.h5"
    extract(models["image"], images, out, batch_size=2, progress=False, engine="ray")
    before = out.read_bytes()
    with pytest.raises(StoreMismatchError, match="backbone_sha256"):
        extract(models["image_other"], images, out, progress=False, engine="ray")
    (images / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserInputError, match=r"broken\.png: .*pass --skip-bad"):
        extract(models["image"], images, out, batch_size=2, progress=False, engine="ray")
    with pytest.raises(UserInputError, match="--workers 5: the Ray cluster has 2 CPUs"):
        extract(models["image"], images, out, progress=False, engine="ray", workers=5)
    assert out.read_bytes() == before  # the store is untouched by the failed runs


def _actor_pids() -> list[int]:
    """Ray Data actor processes below this test process (the cluster's raylets)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    pids = []
    for pid in parent:
        up = pid
        while up in parent and up != os.getpid():
            up = parent[up]
        if up != os.getpid():
            continue
        try:
            if b"MapWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def _journaled(store: Path) -> int:
    journal = store.parent / (store.name + ".d") / "journal"
    return sum(n.endswith(".h5") for n in os.listdir(journal)) if journal.is_dir() else 0


def test_killed_actor_is_restarted_and_the_store_is_identical(cluster, slow, tmp_path):
    model, data, local = slow
    out = tmp_path / "f.h5"
    killed: list[int] = []
    finished = threading.Event()

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 120
        while not finished.is_set() and time.monotonic() < deadline:
            if _journaled(out) >= 4:
                pids = _actor_pids()
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(_journaled(out))
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_one_actor)
    watcher.start()
    try:
        summary = extract(model, data, out, batch_size=BATCH, progress=False, engine="ray")
    finally:
        finished.set()
        watcher.join()
    assert killed and killed[0] < N_SLOW // BATCH, "no actor was killed mid-run"
    assert summary.n_computed == N_SLOW
    assert_same_store(out, local)


def test_killed_driver_rerun_resumes_and_the_store_is_identical(cluster, slow, tmp_path):
    model, data, local = slow
    out = tmp_path / "f.h5"
    args = [model, data, "--out", out, "--batch-size", BATCH, "--engine", "ray"]
    args += ["--address", cluster.address, "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedkit", "extract", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline, seen = time.monotonic() + 120, 0
    while time.monotonic() < deadline and proc.poll() is None and seen < 6:
        seen = _journaled(out)
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert seen >= 6 and not out.exists()  # journaled batches, nothing committed
    summary = extract(model, data, out, batch_size=BATCH, progress=False, engine="ray")
    assert summary.n_resumed >= seen * BATCH  # the re-run took the dead driver's shards
    assert summary.n_computed == N_SLOW - summary.n_resumed
    assert_same_store(out, local)


def test_cli_engine_ray_prints_the_summary(cluster, models, tmp_path):
    images = write_images(tmp_path / "images")
    args = ["extract", models["image"], images, "--out", tmp_path / "f.h5", "--engine", "ray"]
    result = run_cli(*args, "--address", cluster.address, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "computed 6 items" in result.stdout


def test_shards_sent_to_the_driver_give_the_same_store(cluster, models, tmp_path):
    """--ray-shards driver: no actor writes into the store's folder, the store is equal."""
    model, source, options = _sources(models, tmp_path)["images"]  # one bad item too
    extract(model, source, tmp_path / "local.h5", batch_size=2, progress=False, **options)
    got = extract(model, source, tmp_path / "ray.h5", batch_size=2, progress=False,
                  engine="ray", ray_shards="driver", **options)  # fmt: skip
    assert (got.n_computed, got.n_bad) == (10, 1)
    assert_same_store(tmp_path / "ray.h5", tmp_path / "local.h5")


def test_actor_that_cannot_see_the_journal_sends_its_shard(models, tmp_path):
    """No shared filesystem: the actor sends the shard's bytes, written nowhere else."""
    import pyarrow as pa

    from embedkit.extract.opening import open_source
    from embedkit.extract.ray_engine import ShardActor
    from embedkit.extract.worker import BatchWorker
    from embedkit.store import Fingerprint, TapInfo, write_shard

    images = write_images(tmp_path / "images")
    source = open_source(images)
    listing = source.scan()
    work = BatchWorker(load_model(models["image"]), source, device="cpu", dtype="float32")
    fp = Fingerprint.create("x", [TapInfo("pool", (4,)), TapInfo("fmap", (4, 8, 8))], {})
    actor = ShardActor(work, str(tmp_path / "elsewhere" / "journal"), fp, skip_bad=False)
    row = {"batch": 0, "rows": [0], "ids": [listing.ids[0]], "digests": [listing.digests[0]]}
    out = actor(pa.Table.from_pylist([{**row, "labels": ["cat"], "splits": [None]}]))
    assert out["error"].tolist() == [""] and out["computed"].tolist() == [1]
    assert not (tmp_path / "elsewhere").exists()  # nothing written on the wrong node
    feed = work.prepare(np.asarray([0]))[2]
    features = work.infer(feed, actor.expected, 1)
    direct = write_shard(tmp_path / "direct", fp, [listing.ids[0]], [listing.digests[0]],
                         features, labels=["cat"], splits=[None])  # fmt: skip
    assert out["shard"][0] == direct.name
    assert out["shard_bytes"][0] == direct.read_bytes()  # NUL bytes and all
