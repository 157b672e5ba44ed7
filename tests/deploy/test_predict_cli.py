"""``embedkit predict`` and ``embedkit deploy`` as a user runs them: the CLI on real
stores and ONNX files, one-line errors with exit code 2, through the same ``main`` a process
runs (a real process's exit status and stderr: tests/store/test_store_cli.py)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from embedkit.cli import main
from embedkit.deploy import predict
from embedkit.errors import UserInputError
from embedkit.extract import extract
from tests.extract.extract_graphs import make_image_model
from tests.helpers import cli

pytest.importorskip("onnxruntime")


def _one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("embedkit "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def head(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("head") / "head"
    assert main(["train", str(data["image_store"]), "--head", "logreg", "--out", str(out)]) == 0
    return out


def test_train_records_what_the_features_were_made_with(data, head):
    feats = json.loads((head / "train.json").read_text())["features"]
    assert feats["model"] == str(data["image_model"].resolve())
    assert feats["taps"][0]["name"] == "pool" and feats["width"] == 4
    assert feats["preprocess"]["kind"] == "image" and len(feats["backbone_sha256"]) == 64


def test_predict_raw_images_with_top_k(data, head, tmp_path, capsys):
    # The failure of issue 13: this used to be a multi-line HDF5 "Is a directory" error.
    result = cli(capsys, "predict", str(head), str(data["new_images"]), "--out",
                     str(tmp_path / "p.csv"), "--top-k", "2", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    expected = predict(head, data["new_image_store"])
    assert list(rows[0]) == ["id", "pred", "confidence", "label", "top1", "p_top1", "top2",
                             "p_top2"]  # fmt: skip
    assert [r["id"] for r in rows] == list(expected.ids)
    assert [r["top1"] for r in rows] == [r["pred"] for r in rows] == list(expected.labels)
    assert [r["label"] for r in rows] == list(expected.truth)
    p = np.array([[float(r["p_top1"]), float(r["p_top2"])] for r in rows])
    assert np.allclose(p, np.sort(expected.probabilities, 1)[:, ::-1], atol=1e-5)


def test_a_store_from_other_preprocessing_is_refused_naming_the_field(data, head, tmp_path, capsys):
    store = tmp_path / "other.h5"
    spec = {"kind": "image", "size": [16, 16], "mean": [0, 0, 0], "std": [1, 1, 1]}
    extract(data["image_model"], data["new_images"], store, preprocess=spec, progress=False)
    before = store.read_bytes()
    result = cli(capsys, "predict", str(head), str(store))
    _one_line_error(result, "other.h5", "different preprocess mean", "--force")
    forced = cli(
        capsys, "predict", str(head), str(store), "--force", "--out", str(tmp_path / "p.csv")
    )
    assert forced.returncode == 0, forced.stderr
    assert "warning:" in forced.stderr and "predicting anyway" in forced.stderr
    assert store.read_bytes() == before


def test_a_store_from_another_model_is_refused(data, head, tmp_path):
    other = make_image_model(tmp_path / "other.onnx", seed=9)
    extract(other, data["new_images"], tmp_path / "o.h5", progress=False)
    with pytest.raises(UserInputError, match="different backbone_sha256"):
        predict(head, tmp_path / "o.h5")
    with pytest.warns(UserWarning, match="different backbone_sha256"):
        assert len(predict(head, tmp_path / "o.h5", force=True)) == 8


def test_a_moved_or_changed_model_is_named(data, tmp_path, capsys):
    model = shutil.copy(data["image_model"], tmp_path / "m.onnx")
    extract(model, data["images"], tmp_path / "f.h5", progress=False)
    assert main(["train", str(tmp_path / "f.h5"), "--head", "centroid",
                 "--out", str(tmp_path / "h")]) == 0  # fmt: skip
    moved = shutil.move(model, tmp_path / "moved.onnx")
    _one_line_error(cli(capsys, "predict", str(tmp_path / "h"), str(data["new_images"])),
                    "m.onnx", "missing", "--model")  # fmt: skip
    assert len(predict(tmp_path / "h", data["new_images"], model=moved, progress=False)) == 8
    make_image_model(tmp_path / "m.onnx", seed=5)  # another model at the recorded path
    _one_line_error(cli(capsys, "deploy", str(tmp_path / "h"), "--out", str(tmp_path / "x.onnx")),
                    "m.onnx", "changed since the head was trained")  # fmt: skip
    assert not (tmp_path / "x.onnx").exists()


def test_deploy_then_predict_the_deployed_model(data, head, tmp_path, capfd):
    model = tmp_path / "model.onnx"
    result = cli(capfd, "deploy", str(head), "--out", str(model))
    assert result.returncode == 0 and "LogRegHead" in result.stdout, result.stderr
    result = cli(capfd, "predict", str(model), str(data["new_images"]), "--out",
                     str(tmp_path / "p.jsonl"), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    expected = predict(head, data["new_image_store"])
    assert [r["pred"] for r in rows] == list(expected.labels)
    got = np.array([[r["proba"][c] for c in expected.classes] for r in rows])
    assert np.abs(got - expected.probabilities).max() < 1e-5
    _one_line_error(cli(capfd, "predict", str(model), str(data["new_image_store"])),
                    "deployed model", "raw inputs")  # fmt: skip
    _one_line_error(cli(capfd, "predict", str(data["image_model"]), str(data["new_images"])),
                    "not a model written by `embedkit deploy`")  # fmt: skip


def test_a_head_that_cannot_convert_says_so(data, tmp_path, capsys):
    assert main(["train", str(data["image_store"]), "--head", "knn", "--param",
                 "metric=euclidean", "--out", str(tmp_path / "h")]) == 0  # fmt: skip
    result = cli(capsys, "deploy", str(tmp_path / "h"), "--out", str(tmp_path / "m.onnx"))
    _one_line_error(result, "cannot convert a KNNHead with metric='euclidean'")


def test_raw_inputs_need_a_recorded_model(tiny_store, tmp_path):
    assert main(["train", str(tiny_store), "--head", "ridge", "--out", str(tmp_path / "h")]) == 0
    np.save(tmp_path / "x.npy", np.zeros((3, 16), np.float32))
    with pytest.raises(UserInputError, match="trained on features you supplied"):
        predict(tmp_path / "h", tmp_path / "x.npy")
    assert len(predict(tmp_path / "h", tiny_store)) == 300  # its own kind of store still works


def test_predict_writes_parquet_from_a_parquet_source(data, head, tmp_path, capfd):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    files = sorted(p for p in data["new_images"].rglob("*.png"))
    table = pa.table({"image": [p.read_bytes() for p in files],
                      "key": [p.relative_to(data["new_images"]).as_posix() for p in files],
                      "kind": [p.parent.name for p in files]})  # fmt: skip
    pq.write_table(table, tmp_path / "new.parquet")
    result = cli(capfd, "predict", str(head), str(tmp_path / "new.parquet"), "--column", "image",
                     "--id-column", "key", "--label-column", "kind",
                     "--out", str(tmp_path / "p.parquet"), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = pq.read_table(tmp_path / "p.parquet")
    expected = predict(head, data["new_images"])
    assert got.column_names == ["id", "pred", "confidence", "label", "p_cat", "p_dog"]
    assert got.column("id").to_pylist() == list(expected.ids)
    assert got.column("pred").to_pylist() == list(expected.labels)
    assert got.column("label").to_pylist() == list(expected.truth)
    assert pa.types.is_floating(got.schema.field("p_cat").type)
    probs = np.stack([got.column("p_cat").to_numpy(), got.column("p_dog").to_numpy()], 1)
    np.testing.assert_allclose(probs, expected.probabilities, atol=1e-6)


def test_a_backbone_with_a_data_file_extracts_deploys_and_predicts(data, tmp_path, capfd):
    """Weights in ``.onnx.data`` (dynamo exports, models over 2 GB): extract, train, deploy
    and predict all follow the file (the deployed model writes one for tensors over 1 KB;
    this backbone has none), and the fingerprint covers it."""
    import onnx

    from embedkit.extract import load_model

    model = tmp_path / "split.onnx"
    onnx.save(onnx.load(str(data["image_model"])), str(model), save_as_external_data=True,
              location="split.onnx.data", size_threshold=0)  # fmt: skip
    store, head, deployed = tmp_path / "s.h5", tmp_path / "head", tmp_path / "d.onnx"
    extract(model, data["images"], store, progress=False)
    assert main(["train", str(store), "--head", "logreg", "--out", str(head)]) == 0
    result = cli(capfd, "deploy", str(head), "--out", str(deployed))
    assert result.returncode == 0, result.stderr
    result = cli(capfd, "predict", str(deployed), str(data["new_images"]), "--out",
                     str(tmp_path / "p.jsonl"), "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    new_store = tmp_path / "new.h5"
    extract(model, data["new_images"], new_store, progress=False)
    assert [r["pred"] for r in rows] == list(predict(head, new_store).labels)
    before = load_model(model).sha256  # the fingerprint covers the data file
    with (tmp_path / "split.onnx.data").open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    assert load_model(model).sha256 != before
