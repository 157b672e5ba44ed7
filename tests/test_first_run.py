"""A new user's first run, as the README writes it: a CSV of training rows and a CSV of
test rows -> extract twice -> train -> predict -> deploy, with no error and no --force.

The README's `export minilm` line is replaced by a tiny real text model (the pretrained
export is tested in tests/backbones); every other line runs as written, in a fresh folder.
Then the same head is used from other working directories (issue 21).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.extract.extract_graphs import make_text_model

pytest.importorskip("onnxruntime")

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = "the cat dog sat on mat a big small red blue ran fast slow".split()


def readme_first_run() -> list[list[str]]:
    """The commands of the README's first-run block, one argv each."""
    block = re.search(r"<!-- first-run:start -->\n```bash\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md lost its first-run block"
    return [shlex.split(line.split("#")[0]) for line in block.group(1).splitlines() if line]


def write_csv(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(n):
            animal = ("cat", "dog")[i % 2]
            words = rng.choice(WORDS, size=int(rng.integers(3, 9))).tolist()
            writer.writerow([f"{animal} {' '.join(words)}", animal])
    return path


def embedkit(*args, cwd: Path) -> int:
    """``embedkit ARGS`` run in ``cwd`` (in this process: the CLI's own entry point)."""
    from embedkit.cli import main

    before = os.getcwd()
    os.chdir(cwd)
    try:
        return main([str(a) for a in args])
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    """The README block run in a fresh folder; returns that folder."""
    root = tmp_path_factory.mktemp("first-run")
    write_csv(root / "train.csv", 60, seed=0)
    write_csv(root / "test.csv", 20, seed=1)
    commands = readme_first_run()
    assert [c[1] for c in commands] == ["export", "extract", "extract", "train", "predict",
                                        "deploy"]  # fmt: skip
    make_text_model(root / commands[0][commands[0].index("--out") + 1])  # the export line
    for argv in commands[1:]:
        assert argv[0] == "embedkit" and "--force" not in argv
        assert embedkit(*argv[1:], cwd=root) == 0, argv
    return root


def test_the_readme_first_run_trains_predicts_and_deploys(first_run):
    info = json.loads((first_run / "head" / "train.json").read_text())
    assert info["rows"]["test"] == 20  # the marked test rows, whole
    assert info["rows"]["train"] + info["rows"]["val"] == 60  # the unset rows are training rows
    assert info["rows"]["val"] == 6  # carved from the training rows (10%)
    preds = list(csv.DictReader((first_run / "preds.csv").open()))
    assert len(preds) == 20 and {p["pred"] for p in preds} <= {"cat", "dog"}
    assert (first_run / "deployed.onnx").stat().st_size > 0


def test_split_marks_unset_rows_without_force(first_run, tmp_path, capsys):
    store = tmp_path / "feats.h5"
    shutil.copy(first_run / "feats.h5", store)
    shutil.copytree(first_run / "feats.h5.d", tmp_path / "feats.h5.d")
    assert embedkit("split", store, "--val", "0.2", cwd=tmp_path) == 0
    assert "60 unset rows marked (train 48, val 12); 20 test rows kept" in capsys.readouterr().out
    assert embedkit("split", store, "--val", "0.2", cwd=tmp_path) == 2
    assert "60 rows already marked train/val" in capsys.readouterr().err


def test_a_head_trained_elsewhere_predicts_and_deploys_from_anywhere(first_run, tmp_path):
    # train from another folder with relative paths, then predict and deploy from a third
    trainer = tmp_path / "trainer"
    trainer.mkdir()
    rel_store = os.path.relpath(first_run / "feats.h5", trainer)
    assert embedkit("train", rel_store, "--head", "logreg", "--out", "h", cwd=trainer) == 0
    user = tmp_path / "user"
    user.mkdir()
    head = os.path.relpath(trainer / "h", user)
    assert embedkit("predict", head, first_run / "test.csv", "--out", "p.csv", cwd=user) == 0
    assert embedkit("deploy", head, "--out", "m.onnx", cwd=user) == 0
    assert len(list(csv.DictReader((user / "p.csv").open()))) == 20


def test_a_moved_project_finds_its_model_by_the_relative_path(first_run, tmp_path):
    # head, store and model move together: the recorded absolute path is gone
    project = tmp_path / "old"
    project.mkdir()
    shutil.copy(first_run / "model.onnx", project / "model.onnx")
    args = ("model.onnx", first_run / "train.csv", "--out", "f.h5", "--quiet")
    assert embedkit("extract", *args, cwd=project) == 0
    assert embedkit("train", "f.h5", "--head", "logreg", "--out", "head", cwd=project) == 0
    moved = project.rename(tmp_path / "new")
    assert embedkit("predict", "head", first_run / "test.csv", "--out", "p.csv", cwd=moved) == 0
    assert len(list(csv.DictReader((moved / "p.csv").open()))) == 20
