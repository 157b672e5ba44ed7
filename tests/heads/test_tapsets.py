"""Tap sets: parsing, the per-tap join, and train/predict on joined taps of a real store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.errors import UserInputError
from embedkit.heads import load_head, predict_store, train_on_store
from embedkit.heads.tapsets import TapJoin, parse_tap_sets
from embedkit.rows import from_arrays, split_rows
from embedkit.store import FeatureStore
from tests.helpers import cli


@pytest.fixture
def two_tap_store(tmp_path):
    """A 40-d tap on a large scale and a 4-d tap: the label needs both; 800 train / 200 test."""
    rng = np.random.default_rng(0)
    wide = rng.normal(0, 50, size=(1000, 40)).astype(np.float32)
    narrow = rng.normal(size=(1000, 4)).astype(np.float32)
    y = ((wide[:, 0] / 50 + narrow[:, 0]) > 0).astype(int)
    splits = np.where(np.arange(1000) < 800, "train", "test")
    path = tmp_path / "two.h5"
    from_arrays(path, {"final": wide, "early": narrow}, y, splits=splits).close()
    return path, wide, narrow, y, splits


def test_parse_orders_all_by_depth_and_refuses_unknown_taps():
    taps = ["pool", "blocks.4", "blocks.15"]
    assert parse_tap_sets("all", taps) == [("blocks.4",), ("blocks.15",), ("pool",)]
    assert parse_tap_sets("all,joined", taps)[-1] == ("blocks.4", "blocks.15", "pool")
    assert parse_tap_sets("joined", ["pool"]) == [("pool",)]  # one tap: that tap alone
    assert parse_tap_sets(["pool", "blocks.4+pool", "pool"], taps) == [
        ("pool",),
        ("blocks.4", "pool"),
    ]
    with pytest.raises(UserInputError, match=r"'nope' is not a tap of f.h5; its taps: pool"):
        parse_tap_sets("pool+nope", taps, store="f.h5")
    with pytest.raises(UserInputError, match="names a tap twice"):
        parse_tap_sets("pool+pool", taps)


def test_join_gives_each_tap_equal_weight_with_train_statistics():
    rng = np.random.default_rng(1)
    a, b = rng.normal(100, 30, (500, 3)), rng.normal(0, 0.01, (500, 300))
    b[:, 0] = 7.0  # a constant feature is centred, not blown up
    join = TapJoin.fit(("a", "b"), [a[:400], b[:400]])
    X = join.transform([a, b])
    assert X.shape == (500, 303) and X.dtype == np.float32 and np.all(X[:, 3] == 0)
    energy = [float((X[:400, :3] ** 2).sum(1).mean()), float((X[:400, 3:] ** 2).sum(1).mean())]
    assert energy[0] == pytest.approx(1.0, rel=1e-3) and energy[1] == pytest.approx(
        299 / 300, rel=1e-3
    )
    assert np.allclose(join.mean[0], a[:400].mean(0), rtol=1e-5)  # train rows only
    again = TapJoin.from_dict(json.loads(json.dumps(join.to_dict())))
    assert np.array_equal(again.transform([a, b]), X)
    with pytest.raises(UserInputError, match="tap 'b' has 2 features per item"):
        join.transform([a, b[:, :2]])


def test_repeated_tap_joins_and_predict_uses_the_recorded_taps(two_tap_store, tmp_path, capsys):
    path, wide, narrow, y, _ = two_tap_store
    joined = cli(capsys, "train", path, "--head", "logreg", "--tap", "final", "--tap", "early",
                 "--out", tmp_path / "h")  # fmt: skip
    plus = cli(capsys, "train", path, "--head", "logreg", "--tap", "final+early",
               "--out", tmp_path / "p")  # fmt: skip
    assert joined.returncode == 0 and plus.returncode == 0, joined.stderr + plus.stderr
    assert "on tap 'final+early'" in joined.stdout and "fit: one call" in joined.stdout
    h, p = (json.loads((tmp_path / d / "train.json").read_text()) for d in "hp")
    assert h == p  # "a+b" and a repeated --tap train the same head
    info = json.loads((tmp_path / "h" / "train.json").read_text())
    assert info["taps"] == ["final", "early"] and info["features"]["width"] == 44
    assert [t["name"] for t in info["features"]["taps"]] == ["final", "early"]
    assert info["rows"] == {"train": 720, "val": 80, "test": 200}
    join, rows = TapJoin.from_dict(info["join"]), _rows(path, "train")
    stats = TapJoin.fit(("final", "early"), [wide[rows], narrow[rows]])  # the train rows only
    assert np.allclose(join.mean[0], stats.mean[0]) and np.allclose(join.scale[1], stats.scale[1])
    head = load_head(tmp_path / "h")
    expected = head.predict_proba(join.transform([wide, narrow]))
    got = predict_store(tmp_path / "h", path).probabilities
    assert np.allclose(got, expected, atol=1e-6)
    assert info["accuracy"]["test"] > 0.9  # each tap alone is near 0.75
    alone = train_on_store(path, "logreg", tmp_path / "a", tap="early")
    assert alone.accuracy["test"] < 0.85
    out = cli(capsys, "predict", tmp_path / "p", path, "--out", tmp_path / "p.csv")
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + len(y)


def _rows(path, split):
    with FeatureStore(path) as fs:
        return split_rows(fs, val=0.1, seed=0)[split]


def test_comma_in_train_tap_and_joined_maps_are_one_line_errors(two_tap_store, tmp_path, capsys):
    path = two_tap_store[0]
    result = cli(capsys, "train", path, "--head", "logreg", "--tap", "final,early",
                 "--out", tmp_path / "h")  # fmt: skip
    assert result.returncode == 2 and "join taps with +" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "h").exists()


def test_val_is_a_fraction_of_train_and_the_test_rows_stay(two_tap_store, tmp_path):
    path = two_tap_store[0]
    info = train_on_store(path, "logreg", tmp_path / "h", tap="early", val=0.25)
    assert info.rows == {"train": 600, "val": 200, "test": 200}  # 25% of 800 train rows


def test_train_reports_epochs_best_epoch_and_validation(two_tap_store, tmp_path, capsys):
    pytest.importorskip("torch")
    path = two_tap_store[0]
    result = cli(capsys, "train", path, "--head", "linear", "--tap", "early", "--out",
                 tmp_path / "h", "--param", "max_epochs=30")  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "h" / "train.json").read_text())["fit"]
    assert 1 <= info["best_epoch"] <= info["epochs"] <= 30 and info["validation"] == "the val split"
    line = next(x for x in result.stdout.splitlines() if x.startswith("fit:"))
    assert line.startswith(
        f"fit: {info['epochs']} epochs, best epoch {info['best_epoch']} on the val split"
    )
    assert f"val accuracy {info['val_accuracy']:.4f}" in line


def test_progress_prints_plain_lines_during_a_fit(two_tap_store):
    pytest.importorskip("torch")
    import io

    from embedkit.heads import make_head
    from embedkit.heads._progress import epoch_progress

    _, _, narrow, y, _ = two_tap_store
    stream = io.StringIO()
    with epoch_progress(every_s=0.0, stream=stream):
        head = make_head("linear", max_epochs=3, early_stopping=True, random_state=0)
        head.fit(narrow, y)
    lines = stream.getvalue().splitlines()
    assert [x.split(":")[0] for x in lines] == [
        "[train] epoch 1/3",
        "[train] epoch 2/3",
        "[train] epoch 3/3",
    ]
    assert all("val accuracy" in x and "\r" not in x for x in lines)


def test_the_labelling_loop_joins_the_taps_whose_neighbours_agree(tmp_path):
    """``loop_taps``: the default tap and a rotated, noisy copy of it join; noise stays out.

    ``select``, ``bench --labelling`` and a semi head's ``train`` read that set by default.
    """
    from sklearn.datasets import make_blobs

    from embedkit.heads.tapsets import loop_taps
    from embedkit.labelling.picks import select_store

    X, y = make_blobs(400, 16, centers=4, random_state=0)
    rng = np.random.default_rng(0)
    near = X @ np.linalg.qr(rng.normal(size=(16, 16)))[0] + rng.normal(0, 0.1, X.shape)
    taps = {"final": X, "noise": rng.normal(size=(400, 8)), "near": near}
    labels = np.where(np.arange(400) % 20 == 0, y, -1)  # 20 labelled rows
    path = tmp_path / "three.h5"
    from_arrays(path, {k: v.astype(np.float32) for k, v in taps.items()}, labels).close()
    with FeatureStore(path) as fs:
        assert loop_taps(fs, np.arange(400)) == ("near", "final")  # depth order, default last
        assert loop_taps(fs, np.arange(400), "noise") == ("noise",)  # a given tap wins
    record = train_on_store(path, "spread", tmp_path / "h", val=0.0)
    assert record.tap == "near+final" and record.join is not None
    assert train_on_store(path, "logreg", tmp_path / "l", val=0.0).tap == "final"  # as before
    picks, how = select_store(path, 4, strategy="typical")
    assert len(picks) == 4 and how.strategy == "typical"
    with from_arrays(tmp_path / "one.h5", X.astype(np.float32)) as fs:
        assert loop_taps(fs, np.arange(400)) == ("features",)
