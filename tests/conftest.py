"""Shared fixtures: one autouse seed, a tiny dataset, and a small real store."""

from __future__ import annotations

import os
import random

# One BLAS/OpenMP thread per test process, set before numpy loads (subprocesses inherit it).
# `make test` runs 2 xdist workers on 2 cores; OpenBLAS's second thread then spins waiting
# for a busy core: sklearn's estimator checks measured 51 CPU-s with the default 2 threads
# and 17 CPU-s with one, the same tests. An explicit setting in the environment wins.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import embedkit  # noqa: F401,E402  first: ORT_DISABLE_TELEMETRY before a test imports onnxruntime
from tests.helpers import REPO  # noqa: E402

# The modules holding the longest tests (real exports, Ray, processes killed), longest
# first. They run first, so that the run ends on short tests, which pytest-xdist's workers
# share out evenly, rather than with one worker alone on a long test.
LONG_FIRST = (
    "tests/backbones/test_pretrained.py",
    "tests/extract/test_ray.py",
    "tests/test_offline.py",
    "tests/backbones/test_encoders.py",
    "tests/reliability/test_battery.py",
    "tests/backbones/test_install.py",
    "tests/store/test_store_faults.py",
    "tests/extract/test_crash.py",
    "tests/audit/test_audit_lite0.py",
)


def pytest_collection_modifyitems(items):
    """Run the modules of ``LONG_FIRST`` first, in that order; the rest keep theirs."""
    assert all((REPO / path).is_file() for path in LONG_FIRST), "LONG_FIRST names a lost module"
    rank = {path: i for i, path in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass


@pytest.fixture(scope="module")
def tiny_data():
    """300 x 16 float32 features, 3 classes (sklearn make_classification, random_state=0)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=300, n_features=16, n_informative=8, n_classes=3, random_state=0
    )
    return X.astype(np.float32), y.astype(np.int64)


@pytest.fixture
def tiny_store(tmp_path, tiny_data):
    """A real HDF5 store of ``tiny_data`` with a 70/30 train/test split."""
    from embedkit.rows import from_arrays

    X, y = tiny_data
    splits = np.where(np.arange(len(y)) % 10 < 7, "train", "test")
    from_arrays(tmp_path / "tiny.h5", X, y, label_names=["a", "b", "c"], splits=splits).close()
    return tmp_path / "tiny.h5"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name)``: a real backbone exported once per run by ``embedkit export``
    in a real process (minilm: the default export; efficientnet_lite0: taps pool,
    logits and blocks.10). Tests only read the file; exporting costs tens of seconds of CPU, so the
    pytest-xdist workers of one run share each export (made under a file lock)."""
    from filelock import FileLock

    from tests.helpers import run_cli

    lite0 = ["--tap", "pool", "--tap", "logits", "--tap", "blocks.10"]
    taps = {"minilm": [], "efficientnet_lite0": lite0}
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker has its own basetemp in one run's
        root = root.parent
    (root / "exported").mkdir(exist_ok=True)

    def export(name: str):
        out = root / "exported" / f"{name}.onnx"
        with FileLock(f"{out}.lock"):
            if not out.exists():  # export writes atomically: a file here is a whole one
                result = run_cli("export", name, *taps[name], "--out", str(out),
                                 env={"OMP_NUM_THREADS": "1"})  # fmt: skip
                assert result.returncode == 0, result.stderr
        return out

    return export
