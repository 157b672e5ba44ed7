"""``embedkit extract`` as a user runs it: its output, its exit code (a real process where
that is the point, else the same ``main`` in this process)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from embedkit.store import FeatureStore
from tests.extract.extract_graphs import REPO, run_cli
from tests.helpers import cli


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def store(models, image_dir, tmp_path_factory):
    """A store made from the image folder; the bad-input tests must leave it as it is."""
    out = tmp_path_factory.mktemp("cli") / "f.h5"
    result = run_cli("extract", models["image"], image_dir, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet: no progress at all
    return out


def test_cli_extracts_and_prints_summary(models, tmp_path):
    x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1, 0, 1, 0]))
    out = tmp_path / "a.h5"
    args = ["extract", models["array"], tmp_path / "x.npy", "--out", out, "--labels",
            tmp_path / "y.npy", "--split", "train", "--batch-size", "3", "--dtype", "float16",
            "--limit", "5"]  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "computed 5 items, 0 cached" in result.stdout
    # off a terminal, progress is a log line (every 5 s, and one at the end), not a bar
    assert result.stderr.splitlines()[-1].startswith("extract: 5/5 items (100.0%), ")
    assert "ETA 0:00:00" in result.stderr and "\r" not in result.stderr
    with FeatureStore(out) as fs:
        assert len(fs) == 5 and fs.tap_info().dtype == "float16"
        assert fs.ids()[0] == "train/0" and fs.labels().tolist() == [0, 1, 0, 1, 0]


def _assert_one_line_error(result, *needles):
    assert result.returncode not in (0, 1), result  # 1 is an internal error: a bug
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("embedkit extract: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_source_and_model(models, store, tmp_path, capfd):
    before = _sha(store)
    result = cli(capfd, "extract", models["image"], tmp_path / "nope", "--out", store)
    _assert_one_line_error(result, "nope: no such file or folder")
    result = cli(capfd, "extract", tmp_path / "nope.onnx", tmp_path, "--out", store)
    _assert_one_line_error(result, "nope.onnx: no such model file")
    assert _sha(store) == before


def test_not_an_onnx_file(image_dir, store, tmp_path, capfd):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"GIF89a definitely not onnx" * 10)
    before = _sha(store)
    result = cli(capfd, "extract", fake, image_dir, "--out", store)
    _assert_one_line_error(result, "model.onnx: not an ONNX model")
    assert _sha(store) == before


def test_array_shape_does_not_fit(models, tmp_path, capfd):
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 4), np.float32))
    out = tmp_path / "a.h5"
    result = cli(capfd, "extract", models["array"], tmp_path / "x.npy", "--out", out)
    _assert_one_line_error(result, "x.npy: items have shape (4, 4)", "expects (6,)")
    assert not out.exists()


def test_corrupt_image(models, image_dir, store, tmp_path, capfd):
    images = tmp_path / "images"
    shutil.copytree(image_dir, images)
    (images / "dog" / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    before = _sha(store)
    result = cli(capfd, "extract", models["image"], images, "--out", store)
    _assert_one_line_error(result, "dog/x.jpg: cannot decode image", "--skip-bad")
    assert _sha(store) == before
    copy = cli(capfd, "store", "pack", store, tmp_path / "copy.h5")  # a store is not one file
    assert copy.returncode == 0, copy.stderr
    copy = tmp_path / "copy.h5"
    assert cli(capfd, "store", "upgrade", copy).returncode == 0  # a packed copy: a store again
    result = cli(capfd, "extract", models["image"], images, "--out", copy, "--skip-bad")
    assert (
        result.returncode == 0 and "computed 0 items, 6 cached, 0 resumed, 1 bad" in result.stdout
    )


def test_store_from_another_backbone(models, image_dir, store, capfd):
    before = _sha(store)
    result = cli(capfd, "extract", models["image_other"], image_dir, "--out", store)
    _assert_one_line_error(result, "different backbone_sha256")
    assert _sha(store) == before
    result = cli(capfd, "extract", models["image"], image_dir, "--out", store, "--tap", "pool")
    _assert_one_line_error(result, "different taps")
    assert _sha(store) == before


def test_unknown_tap_and_cuda(models, image_dir, tmp_path, capfd):
    out = tmp_path / "f.h5"
    result = cli(capfd, "extract", models["image"], image_dir, "--out", out, "--tap", "logits")
    _assert_one_line_error(result, "unknown tap 'logits'; this model has: pool, fmap")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        result = cli(capfd, "extract", models["image"], image_dir, "--out", out, "--device", "cuda")
        _assert_one_line_error(result, "CUDA is not available", "embedkit[gpu]", "--device cpu")
    assert not out.exists()


def test_missing_onnxruntime_names_the_extras(models, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 6), np.float32))
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from embedkit.cli import main\n"
        f"sys.exit(main(['extract', {str(models['array'])!r}, {str(tmp_path / 'x.npy')!r}, "
        f"'--out', {str(tmp_path / 'a.h5')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "pip install 'embedkit[cpu]'" in result.stderr and "embedkit[gpu]" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "a.h5").exists()


_WITHOUT_RAY = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'ray':\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
    "sys.meta_path.insert(0, Block())\n"
    "from embedkit.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_engine_ray_without_ray_gives_the_install_hint(models, image_dir, tmp_path):
    """As if ray were not installed: --engine ray is refused up front, local runs work."""
    out = tmp_path / "f.h5"

    def cli(*args):
        command = [sys.executable, "-c", _WITHOUT_RAY, "extract", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)

    model = models["image"]
    result = cli(model, image_dir, "--out", out, "--engine", "ray")
    _assert_one_line_error(result, "--engine ray", "pip install 'embedkit[ray]'")
    assert not out.exists() and not (tmp_path / "f.h5.d").exists()  # nothing touched
    result = cli(model, image_dir, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    with FeatureStore(out) as fs:
        assert len(fs) == 6


def test_rerun_with_changed_labels_relabels_cached_rows_without_recomputing(
    models, tmp_path, capfd
):
    x = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1, 2, 2]))
    out = tmp_path / "a.h5"
    args = ["extract", models["array"], tmp_path / "x.npy", "--out", out,
            "--labels", tmp_path / "y.npy", "--batch-size", "4"]  # fmt: skip
    assert cli(capfd, *args).returncode == 0
    with FeatureStore(out) as fs:
        before, shards = fs.features(), sorted(fs._state.shards)
    index = _sha(out)
    again = cli(capfd, *args)  # same labels: nothing computed, the store is not touched
    assert "computed 0 items, 6 cached" in again.stdout and "relabelled" not in again.stdout
    assert _sha(out) == index
    np.save(tmp_path / "y.npy", np.array([0, 7, 0, 0, 7, 7]))  # class 2 unused, 7 is new
    result = cli(capfd, *args)
    assert result.returncode == 0, result.stderr
    assert "computed 0 items, 6 cached, 0 resumed, 0 bad, 4 relabelled" in result.stdout
    with FeatureStore(out) as fs:
        assert fs.label_names == ["0", "1", "2", "7"]  # appended; unused names are kept
        assert [fs.label_names[c] for c in fs.labels()] == ["0", "7", "0", "0", "7", "7"]
        assert np.array_equal(fs.features(), before)  # no feature recomputed or copied
        assert sorted(fs._state.shards) == shards
        assert fs.provenance["runs"][-1]["relabelled"] == 4
