"""Streaming from a real HDF5 store with bounded memory, and the train/predict CLI."""

from __future__ import annotations

import csv
import json
import tracemalloc

import numpy as np
import pytest

from embedkit.cli import main
from embedkit.heads import fit_store, load_head, make_head, predict_store, train_on_store
from embedkit.rows import from_arrays


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """40,000 x 128 float32 (20 MB) of 4 separable classes, in a real store."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 128)) * 0.6
    y = rng.integers(0, 4, 40_000)
    X = (centers[y] + rng.normal(size=(40_000, 128))).astype(np.float32)
    path = tmp_path_factory.mktemp("stream") / "big.h5"
    from_arrays(path, X, y).close()
    return path, X, y


def test_sgd_streams_a_store_larger_than_its_memory_cap(big_store):
    path, X, y = big_store
    # Import everything first, so that the trace sees data, not module code.
    make_head("sgd").partial_fit(X[:8], y[:8], classes=np.arange(4))
    head = make_head("sgd", random_state=0)
    tracemalloc.start()
    try:
        fit_store(head, path, block_rows=1024, epochs=2, memory_limit=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 4, f"peak {peak / 1e6:.1f} MB vs store {X.nbytes / 1e6:.1f} MB"
    assert head.score(X[:5000], y[:5000]) > 0.9
    with pytest.raises(Exception, match="cannot stream"):
        fit_store(make_head("ridge"), path)


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 24)) * 2
    y = np.repeat(np.arange(3), 100)
    X = (centers[y] + rng.normal(size=(300, 24))).astype(np.float32)
    splits = np.where(np.arange(300) % 5 == 0, "test", "train")
    path = tmp_path_factory.mktemp("cli") / "f.h5"
    names = ["ant", "bee", "cow"]
    from_arrays(
        path, X, y, label_names=names, splits=splits, ids=[f"item{i}" for i in range(300)]
    ).close()
    return path


def test_cli_train_and_predict_on_a_real_store(labelled_store, tmp_path, capsys):
    exclude = tmp_path / "suspects.csv"
    exclude.write_text("id,score\nitem1,0.9\nitem2,0.8\nitem5,0.7\n")  # item5 is a test row
    out = tmp_path / "head"
    code = main(
        [
            "train",
            str(labelled_store),
            "--head",
            "mlp",
            "--param",
            "hidden=32",
            "--param",
            "max_epochs=30",
            "--param",
            "lr=0.01",  # 30 one-batch epochs: a short schedule needs a higher rate
            "--exclude",
            str(exclude),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "2 excluded" in printed and "test accuracy:" in printed
    info = json.loads((out / "train.json").read_text())
    assert info["rows"]["test"] == 60 and info["accuracy"]["test"] > 0.9
    assert info["rows"]["train"] + info["rows"]["val"] == 238
    assert load_head(out).get_params()["hidden"] == 32

    assert main(["predict", str(out), str(labelled_store), "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 300 and rows[0]["id"] == "item0"
    assert {r["pred"] for r in rows} == {"ant", "bee", "cow"}
    assert set(rows[0]) == {"id", "pred", "confidence", "label", "p_ant", "p_bee", "p_cow"}
    assert np.mean([r["pred"] == r["label"] for r in rows]) > 0.9

    assert main(["predict", str(out), str(labelled_store), "--out", str(tmp_path / "p.jsonl")]) == 0
    first = json.loads(open(tmp_path / "p.jsonl").readline())
    assert first["id"] == "item0" and sum(first["proba"].values()) == pytest.approx(1.0)


def test_cli_errors_are_one_line(labelled_store, tmp_path, capsys):
    code = main(
        [
            "train",
            str(labelled_store),
            "--head",
            "ridge",
            "--param",
            "C=1",
            "--out",
            str(tmp_path / "h"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown parameter 'C' for head 'ridge'" in err
    assert len(err.strip().splitlines()) == 1
    code = main(
        [
            "train",
            str(labelled_store),
            "--head",
            "ridge",
            "--tap",
            "nope",
            "--out",
            str(tmp_path / "h"),
        ]
    )
    assert code == 2 and "its taps: features" in capsys.readouterr().err
    code = main(["predict", str(tmp_path / "missing"), str(labelled_store)])
    assert code == 2 and "head.json not found" in capsys.readouterr().err


def test_predict_store_gives_every_row_across_blocks_in_store_order(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20_000, 4)).astype(np.float32)  # three 8,192-row blocks
    y = (X[:, 0] > 0).astype(int)
    path = tmp_path / "f.h5"
    from_arrays(path, X, y, ids=[f"r{i}" for i in range(len(X))]).close()
    train_on_store(path, "ridge", tmp_path / "head")
    p = predict_store(tmp_path / "head", path)
    assert p.ids[8190:8194] == ("r8190", "r8191", "r8192", "r8193") and len(p) == len(X)
    assert p.probabilities.shape == (len(X), 2) and p.classes == ("0", "1")
    np.testing.assert_allclose(p.probabilities, load_head(tmp_path / "head").predict_proba(X))
    assert np.mean(np.array(p.labels) == np.array(p.truth)) > 0.95
