"""The battery's last unclear errors (issue 20): each one line naming the file or item.

Wrong file types behind a known suffix, a model that returns NaN for every item, NaN
stored features reaching ``train``, a binary ``--exclude`` file, a NUL in a label or id,
ids that collide once parsed, a broken preprocess in ``train.json``, a tap the backbone
lacks, a spec dtype the graph does not take, and a ``head.json`` device this machine
lacks; an unreachable Ray ``--address``.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np

from tests.extract.extract_graphs import IMAGE_SPEC
from tests.reliability.cases_images import GOOD_IMAGES, GOOD_X, npy
from tests.reliability.harness import Case

S = "{d}/lab.h5"


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=GOOD_X)
    return buf.getvalue()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return buf.getvalue()


def _nan_row(folder: Path, assets) -> None:
    from embedkit.store.files.integrity import stamp

    (shard,) = (folder / "lab.h5.d" / "shards").iterdir()
    with h5py.File(shard, "r+") as f:
        row = f["features/features"][7]
        row[1] = np.nan
        f["features/features"][7] = row
    stamp(shard)  # a NaN the model wrote, not a damaged file


def _array_head(edit):
    """A centroid head trained on the array model's store, then ``edit(train.json dict)``."""

    def setup(folder: Path, assets) -> None:
        from embedkit.extract import extract
        from embedkit.heads import train_on_store

        np.save(folder / "y.npy", np.arange(len(GOOD_X)) % 2)
        extract(
            assets["array"],
            folder / "x.npy",
            folder / "a.h5",
            progress=False,
            labels=str(folder / "y.npy"),
        )
        train_on_store(folder / "a.h5", "centroid", folder / "ah", val=0)
        info = json.loads((folder / "ah" / "train.json").read_text())
        edit(info)
        (folder / "ah" / "train.json").write_text(json.dumps(info))

    return setup


def _bad_preprocess(info: dict) -> None:
    info["features"]["preprocess"] = {"kind": "array", "input": "x", "dtype": "float99"}


def _tap_lacking(info: dict) -> None:
    for tap in info["features"]["taps"]:
        tap["output"] = "nope"


def _device(folder: Path, assets) -> None:
    config = json.loads((folder / "head" / "head.json").read_text())
    config["params"]["device"] = "cuda:7"
    (folder / "head" / "head.json").write_text(json.dumps(config))


IMG = {**GOOD_IMAGES}
NEG = npy(-np.abs(GOOD_X) - 1)  # log of a negative number: NaN for every row
CASES = [
    (
        "npz_named_npy",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/n.h5"),
        ("x.npy", ".npz"),
        {"x.npy": _npz()},
        {},
        None,
    ),
    (
        "zip_named_npy",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/n.h5"),
        ("x.npy", "zip"),
        {"x.npy": _zip()},
        {},
        None,
    ),
    (
        "empty_npy",
        ("extract", "{array}", "{d}/x.npy", "--out", "{d}/n.h5"),
        ("x.npy", "empty"),
        {"x.npy": b""},
        {},
        None,
    ),
    (
        "labels_npz_named_npy",
        ("extract", "{array}", "{d}/x.npy", "--labels", "{d}/y.npy", "--out", "{d}/n.h5"),
        ("y.npy", ".npz"),
        {"x.npy": npy(GOOD_X), "y.npy": _npz()},
        {},
        None,
    ),
    (
        "model_nan_for_every_item",
        ("extract", "{log}", "{d}/neg.npy", "--out", "{d}/n.h5"),
        ("log.onnx", "every item"),
        {"neg.npy": NEG},
        {},
        None,
    ),
    *[
        (
            f"train_{head}_on_nan_features",
            ("train", S, "--head", head, "--out", "{d}/h", *params),
            ("lab.h5", "row 7", "NaN"),
            {},
            {"lab.h5": "lab"},
            _nan_row,
        )
        for head, params in (
            ("logreg", ()),
            ("centroid", ()),
            ("knn", ()),
            ("mlp", ("--param", "max_epochs=1")),
        )
    ],
    (
        "train_exclude_binary",
        ("train", S, "--head", "centroid", "--out", "{d}/h", "--exclude", "{d}/ids.bin"),
        ("ids.bin", "UTF-8"),
        {"ids.bin": b"\x89PNG\r\n\x1a\n\xff\xfe\x00"},
        {"lab.h5": "lab"},
        None,
    ),
    (
        "bench_exclude_binary",
        ("bench", S, "--out", "{d}/b", "--heads", "centroid", "--exclude", "{d}/ids.bin"),
        ("ids.bin", "UTF-8"),
        {"ids.bin": b"\xff\xfe\x00\x01"},
        {"lab.h5": "lab"},
        None,
    ),
    (
        "label_with_nul",
        ("extract", "{text}", "{d}/t.csv", "--out", "{d}/n.h5"),
        ("t.csv", "label", "NUL"),
        {"t.csv": "id,text,label\na,the cat,x\x00y\nb,the dog,z\n"},
        {},
        None,
    ),
    (
        "id_with_nul",
        ("extract", "{text}", "{d}/t.csv", "--out", "{d}/n.h5"),
        ("t.csv", "id", "NUL"),
        {"t.csv": "id,text\na\x00b,the cat\nb,the dog\n"},
        {},
        None,
    ),
    (
        "ids_collide_once_parsed",
        ("extract", "{text}", "{d}/t.jsonl", "--out", "{d}/n.h5"),
        ("t.jsonl", "'1'", "twice"),
        {"t.jsonl": '{"id": 1, "text": "the cat"}\n{"id": 1.0, "text": "the dog"}\n'},
        {},
        None,
    ),
    (
        "predict_broken_preprocess_in_train_json",
        ("predict", "{d}/ah", "{d}/x.npy", "--out", "{d}/p.csv"),
        ("train.json", "dtype"),
        {"x.npy": npy(GOOD_X)},
        {},
        _array_head(_bad_preprocess),
    ),
    (
        "deploy_tap_the_backbone_lacks",
        ("deploy", "{d}/ah", "--out", "{d}/m.onnx"),
        ("train.json", "'nope'"),
        {"x.npy": npy(GOOD_X)},
        {},
        _array_head(_tap_lacking),
    ),
    (
        "spec_dtype_not_the_graph_input",
        ("extract", "{image}", "{d}/imgs", "--out", "{d}/n.h5", "--preprocess", "{d}/spec.json"),
        ("image.onnx", "uint8", "float32"),
        {**IMG, "spec.json": json.dumps({**IMAGE_SPEC, "dtype": "uint8"})},
        {},
        None,
    ),
    (
        "head_json_device_absent",
        ("predict", "{d}/head", S, "--out", "{d}/p.csv"),
        ("head.json", "cuda:7"),
        {},
        {"lab.h5": "lab", "head": "head_mlp"},
        _device,
    ),
]


RAY = [  # an unreachable cluster: one line within Ray's 30 s, none of Ray's own log lines
    (
        "ray_address_unreachable",
        (
            "extract",
            "{array}",
            "{d}/x.npy",
            "--out",
            "{d}/n.h5",
            "--engine",
            "ray",
            "--address",
            "10.255.255.1:6379",
            "--quiet",
        ),
        ("--address", "10.255.255.1:6379"),
        {"x.npy": npy(GOOD_X)},
        {},
        None,
    ),
]


def unclear_cases() -> list[Case]:
    ray = RAY if importlib.util.find_spec("ray") is not None else []
    return [
        Case(f"unclear_{name}", argv, 2, names, files=files, seeds=seeds, setup=setup)
        for name, argv, names, files, seeds, setup in CASES + ray
    ]
