"""``embedkit select`` and ``embedkit label`` as a user runs them, on real stores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from embedkit.rows import from_arrays
from embedkit.store import FeatureStore
from tests.helpers import cli

NAMES = ["ant", "bee", "cat"]


@pytest.fixture
def store(tmp_path):
    X, y = make_blobs(240, 8, centers=3, random_state=0)
    splits = np.where(np.arange(240) % 4 == 0, "test", "train")
    labels = np.where(splits == "test", y, -1)  # train rows unlabelled
    path = tmp_path / "s.h5"
    from_arrays(path, X.astype(np.float32), labels, label_names=NAMES,
                             splits=splits).close()  # fmt: skip
    return path


def _labels(path):
    with FeatureStore(path) as fs:
        return dict(zip(fs.ids().tolist(), fs.labels().tolist())), fs.label_names


def test_select_then_label_then_select_again(store, tmp_path, capfd):
    done = cli(capfd, "select", str(store), "--budget", "6", "--out", str(tmp_path / "p.csv"))
    assert done.returncode == 0, done.stderr
    assert "with typical" in done.stdout
    with open(tmp_path / "p.csv", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [list(r) for r in rows[:1]] == [
        ["id", "label", "source", "score", "guess", "confidence"]
    ]
    with FeatureStore(store) as fs:
        truth = dict(zip(fs.ids().tolist(), fs.splits().tolist()))
    assert all(truth[r["id"]] == "train" for r in rows) and len(rows) == 6
    tasks = json.loads((tmp_path / "p.tasks.json").read_text())
    assert [t["data"]["id"] for t in tasks] == [r["id"] for r in rows]

    with open(tmp_path / "filled.csv", "w", newline="") as f:  # a person fills in the labels
        w = csv.writer(f)
        w.writerow(["id", "label"])
        w.writerows([r["id"], NAMES[i % 3]] for i, r in enumerate(rows))
    done = cli(capfd, "label", str(store), str(tmp_path / "filled.csv"))
    assert done.returncode == 0, done.stderr
    assert "6 rows changed" in done.stdout
    labels, names = _labels(store)
    assert [names[labels[r["id"]]] for r in rows] == [NAMES[i % 3] for i in range(6)]
    with FeatureStore(store) as fs:
        run = fs.provenance["runs"][-1]
    assert run["relabelled"] == 6 and run["command"] == "label" and len(run["labels_sha256"]) == 64
    assert "labelled" in cli(capfd, "info", str(store)).stdout

    again = cli(capfd, "select", str(store), "--budget", "4", "--strategy", "margin",
                    "--out", str(tmp_path / "p2.csv"))  # fmt: skip
    assert again.returncode == 0, again.stderr
    with open(tmp_path / "p2.csv", encoding="utf-8-sig") as f:
        second = list(csv.DictReader(f))
    assert not {r["id"] for r in second} & {r["id"] for r in rows}
    assert all(r["guess"] in NAMES and 0 < float(r["confidence"]) <= 1 for r in second)


def test_label_studio_export_round_trip(store, tmp_path, capfd):
    assert (
        cli(
            capfd, "select", str(store), "--budget", "2", "--out", str(tmp_path / "p.csv")
        ).returncode
        == 0
    )
    tasks = json.loads((tmp_path / "p.tasks.json").read_text())
    for task in tasks:  # what Label Studio exports after a person chose "bee"
        task["annotations"] = [{"result": [{"value": {"choices": ["bee"]}, "type": "choices"}]}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    done = cli(capfd, "label", str(store), str(tmp_path / "export.json"))
    assert done.returncode == 0, done.stderr
    labels, names = _labels(store)
    assert {names[labels[t["data"]["id"]]] for t in tasks} == {"bee"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["nope,ant"], "bad.csv:2: id 'nope' is not in"),
        (["1,ant", "1,bee"], "bad.csv:3: id '1' is labelled 'bee' here but 'ant' at"),
        (["1,ant", "2,wasp"], "bad.csv:3: class 'wasp' is not one of the store's classes"),
    ],
)
def test_bad_label_files_leave_the_store_unchanged(store, tmp_path, lines, message, capfd):
    (tmp_path / "bad.csv").write_text("id,label\n" + "\n".join(lines) + "\n")
    before = _labels(store)
    done = cli(capfd, "label", str(store), str(tmp_path / "bad.csv"))
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _labels(store) == before


def test_new_class_is_added_when_asked(store, tmp_path, capfd):
    (tmp_path / "new.csv").write_text("id,label\n1,wasp\n")
    done = cli(capfd, "label", str(store), str(tmp_path / "new.csv"), "--new-class")
    assert done.returncode == 0 and "new classes: wasp" in done.stdout
    labels, names = _labels(store)
    assert names[labels["1"]] == "wasp" and names[:3] == NAMES


def test_select_refuses_a_budget_larger_than_the_pool(store, tmp_path, capfd):
    done = cli(capfd, "select", str(store), "--budget", "500", "--out", str(tmp_path / "p.csv"))
    assert done.returncode == 2 and "--budget 500" in done.stderr
    assert not (tmp_path / "p.csv").exists()
