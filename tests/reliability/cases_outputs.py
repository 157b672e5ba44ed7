"""The battery's output cases: no command writes over data it did not create.

Every command that writes a file or folder (deploy, predict, train, bench, audit, export,
store pack) is pointed at each kind of existing path: a store's index file, a store's
folder, a head folder, an ONNX model, and one of its own inputs. It must refuse in one
line naming ``--out`` (exit 2) and leave every byte as it was, unless the path is its own
earlier output of the same kind; ``--overwrite`` never lets it write over an input. A
store whose index file is gone but whose folder holds the rows (an orphaned folder) is
refused by every command that would write into it, naming ``embedkit store recover``.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.reliability.cases_images import GOOD_X, npy
from tests.reliability.harness import Case

S = "{d}/lab.h5"
# command -> argv with {out} where the output goes
WRITERS = {
    "deploy": ("deploy", "{d}/head", "--out", "{out}"),
    "predict": ("predict", "{d}/head", S, "--out", "{out}"),
    "train": ("train", S, "--head", "centroid", "--out", "{out}"),
    "bench": (
        "bench",
        S,
        "--quiet",
        "--heads",
        "centroid",
        "--seeds",
        "1",
        "--shots",
        "all",
        "--out",
        "{out}",
    ),
    "audit": ("audit", S, "--out", "{out}"),
    "export": ("export", "efficientnet_lite0", "--out", "{out}"),
    "pack": ("store", "pack", S, "{out}"),
}
# kind of existing path -> (the path, what the case folder holds there, words named)
KINDS = {
    "store_index": ("{d}/other.h5", {"other.h5": "lab"}, ("other.h5",)),
    "store_folder": ("{d}/other.h5.d", {"other.h5": "lab"}, ("other.h5.d",)),
    "head_folder": ("{d}/oldhead", {"oldhead": "head_logreg"}, ("oldhead",)),
    "onnx_model": ("{d}/model.onnx", {}, ("model.onnx",)),
}
# a command's own earlier output of this kind: replaced, exit 0
OWN = {("train", "head_folder")}
# each command aimed at one of its own inputs, with --overwrite: always refused
INPUTS = {
    "deploy": ("deploy", "{d}/head", "--out", "{d}/head/head.json", "--overwrite"),
    "deploy_backbone": (
        "deploy",
        "{d}/head",
        "--model",
        "{d}/model.onnx",
        "--out",
        "{d}/model.onnx",
        "--overwrite",
    ),
    "predict": ("predict", "{d}/head", "{d}/in.csv", "--out", "{d}/in.csv", "--overwrite"),
    "predict_head_file": ("predict", "{d}/head", S, "--out", "{d}/head/old.csv", "--overwrite"),
    "train": ("train", S, "--head", "centroid", "--out", "{d}/lab.h5.d", "--overwrite"),
    "train_index": ("train", S, "--head", "centroid", "--out", S, "--overwrite"),
    "bench": ("bench", S, "--quiet", "--heads", "centroid", "--out", "{d}/lab.h5.d", "--overwrite"),
    "bench_exclude": (
        "bench",
        S,
        "--quiet",
        "--heads",
        "centroid",
        "--exclude",
        "{d}/ids.txt",
        "--out",
        "{d}/ids.txt",
        "--overwrite",
    ),
    "audit": ("audit", S, "--out", S, "--overwrite"),
    "export": ("export", "{d}/hf", "--out", "{d}/hf/model.onnx", "--overwrite"),
    "pack": ("store", "pack", S, S, "--overwrite"),
    "pack_folder": ("store", "pack", S, "{d}/lab.h5.d/shards", "--overwrite"),
}
# the orphaned folder: lab.h5 removed, lab.h5.d/ intact
ORPHAN_COMMANDS = {
    "extract": ("extract", "{array}", "{d}/x.npy", "--out", S, "--quiet"),
    "split": ("split", S),
    "compact": ("store", "compact", S),
    "upgrade": ("store", "upgrade", S),
    "verify": ("store", "verify", S),
    "info": ("info", S),
    "train": ("train", S, "--head", "centroid", "--out", "{d}/h"),
}


def _model(folder: Path, assets) -> None:
    shutil.copyfile(assets["image"], folder / "model.onnx")


def _hf_folder(folder: Path, assets) -> None:
    (folder / "hf").mkdir()
    (folder / "hf" / "config.json").write_text('{"model_type": "bert"}')
    shutil.copyfile(assets["image"], folder / "hf" / "model.onnx")


def _csv_in_head(folder: Path, assets) -> None:
    (folder / "head" / "old.csv").write_text("id,pred,confidence,label\n")


def _orphan(folder: Path, assets) -> None:
    (folder / "lab.h5").unlink()


def _orphan_keeping_rows(folder: Path, assets) -> None:
    from embedkit.store import FeatureStore

    with FeatureStore(folder / "lab.h5") as fs:
        np.savez(folder / "rows.npz", X=fs.features(), y=fs.labels(), s=fs.splits().astype("S8"))
    _orphan(folder, assets)


def _recovered(folder: Path) -> None:
    from embedkit.store import FeatureStore, verify_store

    assert verify_store(folder / "lab.h5") == []
    rows = np.load(folder / "rows.npz")
    with FeatureStore(folder / "lab.h5") as fs:
        assert np.array_equal(fs.features(), rows["X"]) and np.array_equal(fs.labels(), rows["y"])
        assert np.array_equal(fs.splits().astype("S8"), rows["s"])


def _is_predictions(name: str):
    def check(folder: Path) -> None:
        first = (folder / name).read_text().splitlines()[0]
        assert first.startswith("id,pred,confidence,label"), first

    return check


def output_cases() -> list[Case]:
    cases = []
    base_seeds = {"lab.h5": "lab", "head": "head_logreg"}
    for command, argv in WRITERS.items():
        for kind, (target, seeds, names) in KINDS.items():
            args = tuple(a.replace("{out}", target) for a in argv)
            own = (command, kind) in OWN
            cases.append(
                Case(
                    f"out_{command}_over_{kind}",
                    args,
                    0 if own else 2,
                    () if own else ("--out" if command != "pack" else "OUT", *names),
                    seeds=base_seeds | seeds,
                    setup=_model if kind == "onnx_model" else None,
                )
            )
    for name, argv in INPUTS.items():
        cases.append(
            Case(
                f"out_{name}_over_own_input",
                argv,
                2,
                ("is an input",),
                files={"in.csv": "id,text\na,hello\n", "ids.txt": "0\n"},
                seeds=dict(base_seeds),
                setup={
                    "deploy_backbone": _model,
                    "export": _hf_folder,
                    "predict_head_file": _csv_in_head,
                }.get(name),
            )
        )
    # unclear output paths: a missing parent folder, a file where a folder goes
    cases += [
        Case(
            "out_bench_parent_is_file",
            ("bench", S, "--quiet", "--heads", "centroid", "--out", "{d}/ids.txt/b"),
            2,
            ("--out", "ids.txt", "is a file"),
            files={"ids.txt": "0\n"},
            seeds=dict(base_seeds),
        ),
        Case(
            "out_predict_parent_is_file",
            ("predict", "{d}/head", S, "--out", "{d}/ids.txt/sub/p.csv"),
            2,
            ("--out", "ids.txt", "is a file"),
            files={"ids.txt": "0\n"},
            seeds=dict(base_seeds),
        ),
        Case(
            "out_train_parent_is_file",
            ("train", S, "--head", "centroid", "--out", "{d}/ids.txt/h"),
            2,
            ("--out", "ids.txt", "is a file"),
            files={"ids.txt": "0\n"},
            seeds=dict(base_seeds),
        ),
        Case(
            "out_train_over_file",
            ("train", S, "--head", "centroid", "--out", "{d}/ids.txt"),
            2,
            ("--out", "ids.txt", "not a folder"),
            files={"ids.txt": "0\n"},
            seeds=dict(base_seeds),
        ),
        Case(
            "out_predict_over_folder",
            ("predict", "{d}/head", S, "--out", "{d}/x.csv"),
            2,
            ("--out", "x.csv", "folder"),
            files={"x.csv/keep.txt": "keep"},
            seeds=dict(base_seeds),
        ),
        Case(
            "out_predict_over_foreign_csv",
            ("predict", "{d}/head", S, "--out", "{d}/mine.csv"),
            2,
            ("--out", "mine.csv", "--overwrite"),
            files={"mine.csv": "a,b\n1,2\n"},
            seeds=dict(base_seeds),
        ),
        # accepted: missing folders are created; its own earlier output, an empty file, or
        # --overwrite on a foreign file is replaced
        Case(
            "out_predict_parent_missing",
            ("predict", "{d}/head", S, "--out", "{d}/nope/p.csv"),
            0,
            seeds=dict(base_seeds),
            check=_is_predictions("nope/p.csv"),
        ),
        Case(
            "out_predict_over_own_predictions",
            ("predict", "{d}/head", S, "--out", "{d}/p.csv"),
            0,
            files={"p.csv": "id,pred,confidence,label,p_0\nx,0,1,,1\n"},
            seeds=dict(base_seeds),
            check=_is_predictions("p.csv"),
        ),
        Case(
            "out_predict_over_empty_file",
            ("predict", "{d}/head", S, "--out", "{d}/p.csv"),
            0,
            files={"p.csv": ""},
            seeds=dict(base_seeds),
            check=_is_predictions("p.csv"),
        ),
        Case(
            "out_predict_overwrite_foreign",
            ("predict", "{d}/head", S, "--out", "{d}/mine.csv", "--overwrite"),
            0,
            files={"mine.csv": "a,b\n1,2\n"},
            seeds=dict(base_seeds),
            check=_is_predictions("mine.csv"),
        ),
    ]
    for command, argv in ORPHAN_COMMANDS.items():
        cases.append(
            Case(
                f"orphan_folder_{command}",
                argv,
                2,
                ("lab.h5.d", "store recover"),
                files={"x.npy": npy(GOOD_X)},
                seeds={"lab.h5": "array" if command == "extract" else "lab"},
                setup=_orphan,
            )
        )
    cases += [
        Case(
            "orphan_folder_recover",
            ("store", "recover", S),
            0,
            seeds={"lab.h5": "lab"},
            setup=_orphan_keeping_rows,
            check=_recovered,
        ),
        Case(
            "recover_index_exists",
            ("store", "recover", S),
            2,
            ("lab.h5", "nothing to recover"),
            seeds={"lab.h5": "lab"},
        ),
        Case(
            "recover_no_folder",
            ("store", "recover", "{d}/none.h5"),
            2,
            ("none.h5", "no shards"),
            seeds={"lab.h5": "lab"},
        ),
    ]
    return cases
