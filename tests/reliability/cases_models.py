"""The battery's ONNX model and preprocessing-spec cases.

External-data locations must be confined to the model's folder before any byte is read:
``/dev/zero`` as a location would make a reader hash forever, so the case fails by timeout
if the check ever comes after the read.
"""

# ruff: noqa: E501 - the tables read best one case per line
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.extract.extract_graphs import IMAGE_SPEC
from tests.reliability.cases_images import GOOD_IMAGES, GOOD_X, npy
from tests.reliability.harness import Case


def _external_model(location: str) -> tuple[bytes, bytes]:
    """An x @ w model whose ``w`` lives in external data at ``location``; and w's bytes."""
    w = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    tensor = numpy_helper.from_array(w, "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(w.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString(), w.tobytes()


def _unknown_op_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="no.such.domain")],
        "unknown",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _taps_model(taps: str) -> bytes:
    """An x (N, 6) @ w -> y (N, 3) model whose ``embedkit.taps`` metadata is ``taps``."""
    w = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "taps",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "embedkit.taps", taps
    return model.SerializeToString()


_TAP = {"name": "y", "output": "y", "shape": [3], "pooling": "none", "stride": None}
# Malformed ``embedkit.taps`` metadata: (name, the JSON text, words the error names)
TAPS_CASES = [
    ("not_json", "[{", ("embedkit.taps",)),
    ("an_object", json.dumps(_TAP), ("embedkit.taps", "list")),
    ("a_string", json.dumps("y"), ("embedkit.taps", "list")),
    ("empty_list", "[]", ("embedkit.taps",)),
    ("entry_a_string", json.dumps(["y"]), ("embedkit.taps[0]", "object")),
    ("entry_null", json.dumps([None]), ("embedkit.taps[0]",)),
    ("no_name", json.dumps([{"output": "y"}]), ("embedkit.taps[0]", "name")),
    ("name_a_number", json.dumps([{**_TAP, "name": 3}]), ("embedkit.taps[0]", "name")),
    ("name_empty", json.dumps([{**_TAP, "name": ""}]), ("embedkit.taps[0]", "name")),
    ("name_twice", json.dumps([_TAP, _TAP]), ("embedkit.taps[1]", "'y'")),
    ("output_a_list", json.dumps([{**_TAP, "output": ["y"]}]), ("embedkit.taps[0]", "output")),
    ("output_unknown", json.dumps([{**_TAP, "output": "z"}]), ("'z'",)),
    ("shape_a_string", json.dumps([{**_TAP, "shape": "3"}]), ("embedkit.taps[0]", "shape")),
    ("shape_negative", json.dumps([{**_TAP, "shape": [-3]}]), ("embedkit.taps[0]", "shape")),
    ("shape_fraction", json.dumps([{**_TAP, "shape": [1.5]}]), ("embedkit.taps[0]", "shape")),
    ("stride_a_string", json.dumps([{**_TAP, "stride": "2"}]), ("embedkit.taps[0]", "stride")),
    ("pooling_a_number", json.dumps([{**_TAP, "pooling": 1}]), ("embedkit.taps[0]", "pooling")),
]


def _link(name: str, target: str):
    def setup(folder: Path, assets: dict[str, Path]) -> None:
        os.symlink(folder / target, folder / name)

    return setup


def _copy_model(asset: str, to: str):
    def setup(folder: Path, assets: dict[str, Path]) -> None:
        shutil.copyfile(assets[asset], folder / to)

    return setup


def model_cases() -> list[Case]:
    argv = ("extract", "{d}/m/model.onnx", "{d}/x.npy", "--out", "{d}/out.h5", "--quiet")
    x = {"x.npy": npy(GOOD_X)}
    cases = []
    for name, location, files, setup, names in (
        ("parent", "../outside.bin", {"outside.bin": b"\0" * 72}, None, ("../outside.bin",)),
        ("absolute", "/dev/zero", {}, None, ("/dev/zero",)),
        ("nested_parent", "sub/../../outside.bin", {"outside.bin": b"\0" * 72}, None,
         ("sub/../../outside.bin",)),
        ("symlink_out", "w.bin", {"outside.bin": b"\0" * 72}, _link("m/w.bin", "outside.bin"),
         ("'w.bin'", "outside")),
        ("missing", "w.bin", {}, None, ("'w.bin'", "missing")),
        ("nul", "w\0.bin", {}, None, ("outside",)),
    ):  # fmt: skip
        model, _ = _external_model(location)
        files = {"m/model.onnx": model, **x, **files}
        cases.append(
            Case(f"model_external_{name}", argv, 2, ("model.onnx", *names), files, {}, None, setup)
        )
    model, weights = _external_model("w.bin")
    cases.append(
        Case("model_external_ok", argv, 0, (), {"m/model.onnx": model, "m/w.bin": weights, **x})
    )
    seeded = {"out.h5": "array"}
    for name, data, names in (
        ("noise", np.random.default_rng(1).integers(0, 256, 300, np.uint8).tobytes(), ("not an ONNX",)),
        ("empty", b"", ("model.onnx",)),
        ("text", b'{"kind": "image"}\n', ("model.onnx",)),
        ("truncated", _external_model("w.bin")[0][:40], ("model.onnx",)),
        ("unknown_op", _unknown_op_model(), ("model.onnx", "onnxruntime")),
    ):  # fmt: skip
        files = {"m/model.onnx": data, **x}
        # a seed store would refuse a model that loads (another backbone_sha256) first
        seed = {} if name == "unknown_op" else seeded
        cases.append(Case(f"model_{name}", argv, 2, names, files, seed))
    for name, taps, names in TAPS_CASES:
        files = {"m/model.onnx": _taps_model(taps), **x}
        cases.append(Case(f"model_taps_{name}", argv, 2, ("model.onnx", *names), files))
    cases.append(Case("model_missing", argv, 2, ("model.onnx", "no such"), x, seeded))
    cases.append(
        Case("model_is_folder", argv, 2, ("model.onnx",), {"m/model.onnx/x": b"", **x}, seeded)
    )
    return cases


def _spec(**changes) -> str:
    return json.dumps({**IMAGE_SPEC, **changes})


IMAGE_SPEC_CASES = {
    "std_zero": ({"std": [0, 0, 0]}, "std"),
    "std_one_zero": ({"std": [0, 1, 1]}, "std"),
    "std_negative": ({"std": [-1, 1, 1]}, "std"),
    "std_nan": ({"std": [float("nan")] * 3}, "std"),
    "std_inf": ({"std": [float("inf")] * 3}, "std"),
    "std_string": ({"std": "128"}, "std"),
    "std_empty": ({"std": []}, "std"),
    "std_two": ({"std": [1, 1]}, "std"),
    "std_bool": ({"std": [True, 1, 1]}, "std"),
    "mean_two": ({"mean": [1, 2]}, "mean"),
    "mean_string": ({"mean": "x"}, "mean"),
    "mean_inf": ({"mean": [float("inf")]}, "mean"),
    "mean_nested": ({"mean": [[1], 2, 3]}, "mean"),
    "size_zero": ({"size": [0, 16]}, "size"),
    "size_negative": ({"size": [-16, 16]}, "size"),
    "size_one": ({"size": [16]}, "size"),
    "size_three": ({"size": [16, 16, 3]}, "size"),
    "size_strings": ({"size": ["a", "b"]}, "size"),
    "size_float": ({"size": [16.5, 16]}, "size"),
    "size_bool": ({"size": True}, "size"),
    "size_null": ({"size": None}, "size"),
    "size_not_graph": ({"size": [32, 32]}, ("preprocessing", "pixel_values", "(3, 32, 32)")),
    "resize_zero": ({"resize_shorter": 0}, "resize_shorter"),
    "resize_negative": ({"resize_shorter": -5}, "resize_shorter"),
    "resize_string": ({"resize_shorter": "x"}, "resize_shorter"),
    "resize_float": ({"resize_shorter": 1.5}, "resize_shorter"),
    "crop": ({"crop": "left"}, "crop"),
    "color": ({"color": "CMYK"}, "color"),
    "layout": ({"layout": "NCWH"}, "layout"),
    "interpolation": ({"interpolation": "nearest"}, "interpolation"),
    "interpolation_list": ({"interpolation": ["bilinear"]}, "interpolation"),
    "dtype_float64": ({"dtype": "float64"}, "dtype"),
    "dtype_int8": ({"dtype": "int8"}, "dtype"),
    "input_empty": ({"input": ""}, "input"),
    "input_number": ({"input": 5}, "input"),
    "input_not_graph": ({"input": "pixels"}, ("image.onnx", "'pixels'", "input")),
    "kind_unknown": ({"kind": "audio"}, "audio"),
    "kind_list": ({"kind": ["image"]}, "kind"),
    "unknown_key": ({"mean_": [0, 0, 0]}, "mean_"),
}


def spec_cases() -> list[Case]:
    image_argv = ("extract", "{image}", "{d}/imgs", "--out", "{d}/out.h5", "--quiet",
                  "--preprocess", "{d}/spec.json")  # fmt: skip
    cases = []
    for name, (changes, field) in IMAGE_SPEC_CASES.items():
        files = {**GOOD_IMAGES, "spec.json": _spec(**changes)}
        names = field if isinstance(field, tuple) else ("spec.json", field)
        cases.append(Case(f"spec_{name}", image_argv, 2, names, files))
    no_kind = {k: v for k, v in IMAGE_SPEC.items() if k != "kind"}
    for name, content, word in (
        ("kind_missing", json.dumps(no_kind), "kind"),
        ("not_json", "{size: 16}", "JSON"),
        ("json_array", "[1, 2]", "object"),
        ("json_string", '"image"', "object"),
        ("empty_file", "", "JSON"),
        ("latin1", b'{"kind": "im\xe1ge"}', "spec.json"),
        ("nested_not_object", '{"preprocess": 5}', "kind"),
    ):
        files = {**GOOD_IMAGES, "spec.json": content}
        cases.append(Case(f"spec_{name}", image_argv, 2, ("spec.json", word), files))
    cases.append(Case("spec_missing_file", image_argv, 2, ("spec.json",), dict(GOOD_IMAGES)))
    text_argv = ("extract", "{text}", "{d}/a.txt", "--out", "{d}/out.h5", "--quiet",
                 "--preprocess", "{d}/spec.json")  # fmt: skip
    for name, changes, field in (
        ("max_length_zero", {"max_length": 0}, "max_length"),
        ("max_length_negative", {"max_length": -1}, "max_length"),
        ("max_length_string", {"max_length": "8"}, "max_length"),
        ("max_length_bool", {"max_length": True}, "max_length"),
        ("inputs_unknown", {"inputs": ["input_ids", "pixel_values"]}, "inputs"),
        ("inputs_empty", {"inputs": []}, "inputs"),
        ("inputs_string", {"inputs": "input_ids"}, "inputs"),
    ):
        spec = json.dumps({"kind": "text", **changes})
        files = {"a.txt": "the cat\n", "spec.json": spec}
        cases.append(Case(f"spec_text_{name}", text_argv, 2, ("spec.json", field), files))
    array_argv = ("extract", "{array}", "{d}/x.npy", "--out", "{d}/out.h5", "--quiet",
                  "--preprocess", "{d}/spec.json")  # fmt: skip
    for name, changes, field in (
        ("dtype_float128", {"dtype": "float128"}, "dtype"),
        ("dtype_complex", {"dtype": "complex64"}, "dtype"),
        ("input_not_graph", {"input": "nope"}, ("array.onnx", "'nope'")),
    ):
        spec = json.dumps({"kind": "array", **changes})
        files = {"x.npy": npy(GOOD_X), "spec.json": spec}
        names = field if isinstance(field, tuple) else ("spec.json", field)
        cases.append(Case(f"spec_array_{name}", array_argv, 2, names, files))
    sidecar_argv = ("extract", "{d}/model.onnx", "{d}/imgs", "--out", "{d}/out.h5", "--quiet")
    files = {**GOOD_IMAGES, "model.onnx.json": json.dumps({"preprocess": {**IMAGE_SPEC, "std": 0}})}
    cases.append(
        Case("spec_sidecar_std", sidecar_argv, 2, ("model.onnx.json", "std"), files, {}, None,
             _copy_model("image_plain", "model.onnx"))
    )  # fmt: skip
    return cases
