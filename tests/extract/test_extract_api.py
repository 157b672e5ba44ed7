"""``embedkit.extract.extract`` end to end: real onnxruntime sessions into real HDF5 stores."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from embedkit.errors import StoreMismatchError, UserInputError
from embedkit.extract import ExtractConfig, extract, load_model, open_source, select_providers
from embedkit.extract.local import PREP_NICE
from embedkit.extract.preprocess import make_preprocessor
from embedkit.extract.providers import Runner, others_running
from embedkit.extract.sources import ImageFolderSource
from embedkit.store import FeatureStore
from tests.extract.extract_graphs import IMAGE_SPEC, make_slow_model


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference(model_path, source_path, outputs):
    """Features the slow obvious way: one item at a time through a bare session."""
    model = load_model(model_path)
    source = open_source(source_path)
    n = len(source.scan())
    pre = make_preprocessor(model, source.kind, str(source_path))
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rows = [session.run(outputs, pre.collate([pre.prepare(source.read(i))])) for i in range(n)]
    return [np.concatenate([r[k] for r in rows]) for k in range(len(outputs))]


def test_image_folder_matches_bare_session(models, image_dir, tmp_path):
    out = tmp_path / "f.h5"
    summary = extract(models["image"], image_dir, out, batch_size=4, progress=False)
    assert (summary.n_computed, summary.n_cached, summary.n_total) == (6, 0, 6)
    assert summary.provider == "CPUExecutionProvider"
    pool, fmap = _reference(models["image"], image_dir, ["pool", "fmap"])
    with FeatureStore(out) as fs:
        assert fs.taps == ["pool", "fmap"]
        assert fs.tap_info("fmap").shape == (4, 8, 8) and fs.tap_info("fmap").stride == 2
        np.testing.assert_allclose(fs.features("pool"), pool, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fs.features("fmap"), fmap, rtol=1e-5, atol=1e-6)
        assert fs.label_names == ["cat", "dog"]
        assert fs.labels().tolist() == [0, 0, 0, 1, 1, 1]
        assert fs.provenance["backbone"] == "tiny_conv"
        assert fs.provenance["provider"] == "CPUExecutionProvider"
        assert fs.provenance["runs"][-1]["provider"] == "CPUExecutionProvider"


def test_rerun_computes_nothing_and_new_items_only(models, image_dir, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(image_dir, images)
    shutil.rmtree(images / "dog")
    out = tmp_path / "f.h5"
    assert extract(models["image"], images, out, progress=False).n_computed == 3
    again = extract(models["image"], images, out, progress=False)
    assert (again.n_computed, again.n_cached, again.provider) == (0, 3, "none")
    shutil.copytree(image_dir / "dog", images / "dog")
    (images / "cat/0.png").write_bytes((image_dir / "dog/0.png").read_bytes())  # changed
    more = extract(models["image"], images, out, progress=False)
    assert (more.n_computed, more.n_cached, more.n_total) == (4, 2, 6)
    with FeatureStore(out) as fs:
        np.testing.assert_array_equal(fs.features("pool", rows=[0]), fs.features("pool", rows=[3]))


@pytest.mark.parametrize(
    "change, field",
    [
        ({"model": "image_other"}, "backbone_sha256"),
        ({"taps": ["pool"]}, "taps"),
        ({"preprocess": {**IMAGE_SPEC, "mean": [0, 0, 0]}}, "preprocess"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_mismatch_refused_and_store_unchanged(models, image_dir, tmp_path, change, field):
    out = tmp_path / "f.h5"
    extract(models["image"], image_dir, out, progress=False, limit=2)
    before = _sha(out)
    options = {k: v for k, v in change.items() if k != "model"}
    model = models[change.get("model", "image")]
    with pytest.raises(StoreMismatchError, match=f"different {field}"):
        extract(model, image_dir, out, progress=False, **options)
    assert _sha(out) == before
    assert not (tmp_path / "f.h5.d" / "journal").exists()


def test_bad_image_stops_naming_it_and_store_unchanged(models, image_dir, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(image_dir, images)
    out = tmp_path / "f.h5"
    extract(models["image"], images, out, progress=False)
    before = _sha(out)
    (images / "cat/x.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserInputError, match=r"cat/x.jpg: cannot decode image .*--skip-bad"):
        extract(models["image"], images, out, progress=False)
    assert _sha(out) == before
    summary = extract(models["image"], images, out, progress=False, skip_bad=True)
    assert (summary.n_bad, summary.n_computed, summary.n_total) == (1, 0, 6)
    with FeatureStore(out) as fs:
        assert [b["id"] for b in fs.bad_items()] == ["cat/x.jpg"]
    again = extract(models["image"], images, out, progress=False, skip_bad=True)
    assert (again.n_bad, again.n_computed) == (0, 0)  # bad items are not retried


def test_text_csv_with_labels_and_split(models, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nthe cat sat,pets\nred dog ran fast,pets\na big mat,home\n")
    out = tmp_path / "t.h5"
    summary = extract(models["text"], path, out, split="train", batch_size=2, progress=False)
    assert summary.n_computed == 3
    (ref,) = _reference(models["text"], path, ["sentence"])
    with FeatureStore(out) as fs:
        np.testing.assert_allclose(fs.features(), ref, rtol=1e-5, atol=1e-6)
        assert fs.ids().tolist() == ["train/0", "train/1", "train/2"]
        assert fs.splits().tolist() == ["train"] * 3
        assert fs.label_names == ["home", "pets"] and fs.labels().tolist() == [1, 1, 0]
    test = tmp_path / "test.txt"
    test.write_text("small blue cat\n")
    extract(models["text"], test, out, split="test", progress=False)
    with FeatureStore(out) as fs:
        assert fs.ids().tolist()[-1] == "test/0" and fs.labels().tolist()[-1] == -1


def test_array_npy_float16_and_shape_error(models, array_file, tmp_path):
    out = tmp_path / "a.h5"
    np.save(tmp_path / "y.npy", np.arange(10) % 3)
    cfg = ExtractConfig(dtype="float16", batch_size=3, progress=False)
    extract(models["array"], array_file, out, cfg, labels=tmp_path / "y.npy")
    x = np.load(array_file)
    with FeatureStore(out) as fs:
        assert fs.tap_info().dtype == "float16"
        stored = fs.features(dtype=np.float16)
        np.testing.assert_array_equal(stored, (x @ _weights(models["array"])).astype(np.float16))
        assert fs.labels().tolist() == (np.arange(10) % 3).tolist()
    np.save(tmp_path / "wide.npy", np.zeros((4, 7), np.float32))
    with pytest.raises(UserInputError, match=r"wide.npy: items have shape \(7,\).*expects \(6,\)"):
        extract(models["array"], tmp_path / "wide.npy", tmp_path / "b.h5", progress=False)
    assert not (tmp_path / "b.h5").exists()


def _weights(model_path):
    import onnx
    from onnx import numpy_helper

    return numpy_helper.to_array(onnx.load(str(model_path)).graph.initializer[0])


def test_uint8_image_array(models, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", images)
    out = tmp_path / "i.h5"
    assert extract(models["image"], tmp_path / "imgs.npy", out, progress=False).n_computed == 5
    np.save(tmp_path / "bad.npy", images.astype(np.float32))
    with pytest.raises(UserInputError, match=r"bad.npy: image arrays must be uint8"):
        extract(models["image"], tmp_path / "bad.npy", tmp_path / "j.h5", progress=False)


def test_many_batches_keep_source_order(tmp_path):
    model = make_slow_model(tmp_path / "slow.onnx", dim=16, depth=2)
    x = np.random.default_rng(1).normal(size=(103, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "s.h5"
    extract(model, tmp_path / "x.npy", out, batch_size=4, workers=3, progress=False)
    (ref,) = _reference(model, tmp_path / "x.npy", ["y"])
    with FeatureStore(out) as fs:
        assert fs.ids().tolist() == [str(i) for i in range(103)]
        np.testing.assert_allclose(fs.features(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
def test_preprocessing_threads_yield_to_inference(models, image_dir, tmp_path):
    """Decoding runs nicer than the caller and ONNX Runtime; the caller's priority is kept."""
    priority = {}  # thread name prefix -> niceness while reading an item

    class Recording(ImageFolderSource):
        def read(self, index):
            tid = threading.get_native_id()
            priority[threading.current_thread().name.split("_")[0]] = os.getpriority(
                os.PRIO_PROCESS, tid
            )
            return super().read(index)

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    out = tmp_path / "f.h5"
    summary = extract(models["image"], Recording(image_dir), out, batch_size=2, progress=False)
    assert summary.n_computed == 6
    assert priority == {"MainThread": base, "embedkit-prep": min(19, base + PREP_NICE)}
    assert priority["embedkit-prep"] > base or base == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    pool, _ = _reference(models["image"], image_dir, ["pool", "fmap"])
    with FeatureStore(out) as fs:
        np.testing.assert_allclose(fs.features("pool"), pool, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_size": 0}, "--batch-size 0: pass an integer of at least 1"),
        ({"batch_size": True}, "--batch-size True"),
        ({"workers": "4"}, "--workers '4'"),
        ({"limit": -3}, "--limit -3"),
        ({"engine": "spark"}, "--engine 'spark': pass one of: local, ray"),
        ({"dtype": "float8"}, "--dtype 'float8': pass one of: float32, float16"),
        ({"device": "tpu"}, "--device 'tpu': pass one of: auto, cpu, cuda"),
        ({"split": "dev"}, "--split 'dev': pass one of: train, val, test"),
        ({"taps": "pool"}, "--tap 'pool': pass a sequence of tap names"),
        ({"text_column": 3}, "--text-column 3: pass a string"),
        ({"skip_bad": "yes"}, "--skip-bad 'yes': pass True or False"),
        ({"ray_shards": "driver"}, "--ray-shards driver applies to --engine ray only"),
        ({"address": "auto"}, "--address auto applies to --engine ray only"),
    ],
)
def test_config_refuses_a_bad_option_naming_it(models, array_file, tmp_path, options, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        ExtractConfig(**options)
    out = tmp_path / "o.h5"
    with pytest.raises(UserInputError, match=re.escape(message)):  # before anything is read
        extract(models["array"], array_file, out, **options)
    assert not out.exists() and not (tmp_path / "o.h5.d").exists()
    assert ExtractConfig(taps=["pool"], engine="ray", address="auto").taps == ("pool",)


def test_unknown_option_and_providers():
    with pytest.raises(UserInputError, match="unknown extract option 'batchsize'"):
        extract("m.onnx", "x.npy", "o.h5", batchsize=3)
    with pytest.raises(UserInputError, match="unknown extract option 'batchsize'"):
        ExtractConfig(batchsize=3)  # the same one line for a config made directly
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(UserInputError, match="--device 'tpu' is not one of: auto, cpu, cuda"):
        select_providers("tpu")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert select_providers("auto")[0] == "CUDAExecutionProvider"
    else:
        assert select_providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(UserInputError, match=r"CUDA is not available.*--device cpu"):
            select_providers("cuda")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_session_threads_do_not_spin_beside_a_busy_process(models):
    # ORT's idle threads spin only while no other process wants the CPU: a child that
    # keeps a core busy is counted (waiting for a CPU counts as running), and turns it off
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and running
        assert others_running() >= 1
        assert Runner(models["array"], ["y"], device="cpu").spinning is False
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.gpu
@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu"
)
def test_cuda_iobinding_matches_cpu(models, image_dir, tmp_path):
    cpu = extract(models["image"], image_dir, tmp_path / "c.h5", device="cpu", progress=False)
    gpu = extract(models["image"], image_dir, tmp_path / "g.h5", device="cuda", progress=False)
    assert gpu.provider == "CUDAExecutionProvider" and cpu.n_computed == gpu.n_computed
    with FeatureStore(cpu.path) as a, FeatureStore(gpu.path) as b:
        np.testing.assert_allclose(a.features("pool"), b.features("pool"), atol=1e-4)


def test_imports_without_torch_or_backbones():
    code = (
        "import sys\n"
        "import embedkit.extract, embedkit.extract.pipeline, embedkit.store\n"
        "import embedkit.cli._extract_cmd\n"
        "assert 'torch' not in sys.modules\n"
        "assert not any(m.startswith('embedkit.backbones') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_session_built_in_background_fails_cleanly(array_file, tmp_path):
    """A graph onnx parses but onnxruntime refuses: one-line error, no store, no thread left."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 6])
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "bad", [x], [y])
    model = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph), str(model))
    assert load_model(model).sha256 == _sha(model)  # the file's own sha256
    with pytest.raises(UserInputError, match=r"bad.onnx: onnxruntime cannot load the model"):
        extract(model, array_file, tmp_path / "b.h5", progress=False)
    assert not (tmp_path / "b.h5").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("embedkit-")]
