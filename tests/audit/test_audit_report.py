"""The report files, class balance, read_ids_file, and the ``embedkit audit`` CLI on real stores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from embedkit.audit import audit, audit_arrays, class_balance
from embedkit.errors import UserInputError
from embedkit.rows import from_arrays, read_ids_file
from embedkit.store import FeatureStore
from tests.helpers import cli

from .conftest import flip_labels


def _rows(path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


FILES = ("report.md", "report.json", "suspects.csv", "duplicates.csv", "outliers.csv")


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    """A real store: 3 imbalanced blob classes (120/60/24), 5% flipped, one train/test copy."""
    X, y = make_blobs([120, 60, 24], n_features=12, cluster_std=2.5, random_state=0)
    noisy, flipped = flip_labels(y, 0.05)
    X[203] = X[0]  # an exact copy, moved to the test split below
    splits = np.where(np.arange(len(y)) < 180, "train", "test")
    path = tmp_path_factory.mktemp("audit") / "blobs.h5"
    ids = [f"item{i:03d}" for i in range(len(y))]
    from_arrays(
        path, X.astype(np.float32), noisy, ids=ids, label_names=["a", "b", "c"], splits=splits
    ).close()
    return path, flipped, noisy


def test_imbalance_ratio_and_per_class_accuracy():
    y = np.array([0] * 100 + [1] * 50 + [2] * 20)
    pred = y.copy()
    pred[:10] = 1  # ten of class 0 predicted as 1
    balance = class_balance(y, pred, 3)
    assert balance.imbalance_ratio == 5.0
    np.testing.assert_allclose(balance.accuracy, [0.9, 1.0, 1.0])
    assert balance.top_confusions() == [(0, 1, 10)]
    assert class_balance(y, pred, 4).imbalance_ratio == float("inf")  # class 3 is empty


def test_audit_a_store_and_write_every_file(labelled_store, tmp_path):
    path, flipped, noisy = labelled_store
    report = audit(path, folds=3, block_size=64)
    out = tmp_path / "report"
    assert report.write(out) == out / "report.md"
    for name in (*FILES, "confusion.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"

    summary = json.loads((out / "report.json").read_text())
    assert summary["source"] == {"store": str(path), "tap": "features"}
    assert summary["n_items"] == 204 and summary["n_labelled"] == 204
    balance = summary["class_balance"]
    counts = np.bincount(noisy)
    assert balance["counts"] == dict(zip("abc", counts.tolist()))
    assert balance["imbalance_ratio"] == pytest.approx(counts.max() / counts.min(), abs=1e-6)
    assert summary["duplicates"]["n_cross_split"] == 1

    suspects = _rows(out / "suspects.csv")
    assert len(suspects) == report.n_issues > 0
    assert [int(r["rank"]) for r in suspects] == list(range(1, len(suspects) + 1))
    assert {"id", "given_label", "suggested_label", "self_confidence", "margin"} <= set(suspects[0])
    flipped_ids = {f"item{i:03d}" for i in flipped}
    found = {r["id"] for r in suspects} & flipped_ids
    assert len(found) >= 0.7 * len(flipped_ids)
    scores = [float(r["self_confidence"]) for r in suspects]
    assert scores == sorted(scores)

    dups = _rows(out / "duplicates.csv")
    leak = [r for r in dups if r["cross_split"] == "True"]
    assert [(r["id_a"], r["id_b"]) for r in leak] == [("item000", "item203")]
    outliers = _rows(out / "outliers.csv")
    assert len(outliers) == 10 and float(outliers[0]["outlier_score"]) >= float(
        outliers[-1]["outlier_score"]
    )
    text = (out / "report.md").read_text()
    assert "# Audit report" in text and "label issues" in text and "confusion.png" in text

    # the suspects file is a valid --exclude file
    assert read_ids_file(out / "suspects.csv") == {r["id"] for r in suspects}


def test_top_k_lists_that_many_rows(tmp_path):
    X, y = make_blobs(90, centers=3, random_state=0)
    report = audit_arrays(X, y, folds=3, top_k=7)
    report.write(tmp_path)
    assert len(_rows(tmp_path / "suspects.csv")) == 7
    assert len(_rows(tmp_path / "outliers.csv")) == 7


def test_read_ids_file_formats_and_errors(tmp_path):
    plain = tmp_path / "ids.txt"
    plain.write_text("a1\n\n# skipped\n b2 \n")
    assert read_ids_file(plain) == {"a1", "b2"}
    tsv = tmp_path / "ids.tsv"
    tsv.write_text("score\tid\n0.1\tx\n0.2\ty\n")
    assert read_ids_file(tsv) == {"x", "y"}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\nx,1\n")
    with pytest.raises(UserInputError, match="no 'id' column.*name, score"):
        read_ids_file(bad)
    with pytest.raises(UserInputError, match="does not exist"):
        read_ids_file(tmp_path / "missing.txt")


def test_unknown_option_and_tap_list_the_valid_ones(labelled_store):
    path, _, _ = labelled_store
    with pytest.raises(UserInputError, match="unknown audit option.*valid:.*dup_threshold"):
        audit(path, dup_treshold=0.9)
    with pytest.raises(UserInputError, match="no tap 'pooled'; taps: features"):
        audit(path, tap="pooled")


def test_cli_writes_the_report(labelled_store, tmp_path, capfd):
    path, _, _ = labelled_store
    out = tmp_path / "cli"
    result = cli(capfd, "audit", str(path), "--folds", "3", "--top-k", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "label issues" in result.stdout and "1 across splits" in result.stdout
    assert all((out / name).exists() for name in FILES)
    assert json.loads((out / "report.json").read_text())["spec"]["folds"] == 3


def test_cli_reports_a_class_without_labelled_rows(tmp_path, capfd):
    path = tmp_path / "empty-class.h5"
    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    from_arrays(path, X, np.repeat([0, 1], 30), label_names=["a", "b", "c"]).close()
    result = cli(capfd, "audit", str(path), "--folds", "3", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "imbalance ratio inf (a class is empty)" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["class_balance"]["imbalance_ratio"] is None


def test_cli_store_without_labels_says_how_to_add_them(tmp_path, capfd):
    path = tmp_path / "unlabelled.h5"
    from_arrays(path, np.random.default_rng(0).normal(size=(20, 4))).close()
    result = cli(capfd, "audit", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert "no labels" in message and str(path) in message
    assert "--label-column" in message and "from_arrays" in message
    assert not (tmp_path / "out").exists()


def test_audit_an_open_store(labelled_store):
    path, _, noisy = labelled_store
    with FeatureStore(path) as fs:
        report = audit(fs, folds=3, k=3)
    assert report.source["store"] == str(path)
    np.testing.assert_array_equal(report.labels, noisy)
    assert report.scan.knn_index.shape == (len(noisy), 3)


def test_a_test_row_copied_among_unset_rows_is_cross_split(labelled_store):
    # issue 21: unset rows are training rows (docs/splits.md), so a test item duplicated
    # among them leaks exactly as one among rows marked train does
    path, _, _ = labelled_store
    with FeatureStore(path) as fs:
        X, y, splits = fs.features(), fs.labels(), fs.splits()
    unset = np.where(splits == "train", "", splits)
    report = audit_arrays(X, y, splits=unset, folds=3)
    assert report.summary()["duplicates"]["n_cross_split"] == 1
