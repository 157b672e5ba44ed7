"""Tiny ONNX graphs built with onnx.helper (no torch) and tiny datasets for extract tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 16
IMAGE_SPEC = {
    "kind": "image",
    "input": "pixel_values",
    "size": [IMAGE_SIZE, IMAGE_SIZE],
    "resize_shorter": None,
    "crop": None,
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "color": "RGB",
    "layout": "NCHW",
    "interpolation": "bilinear",
    "dtype": "float32",
}
WORDS = "[PAD] [UNK] the cat dog sat on mat a big small red blue ran fast slow".split()


def journaled_batches(journal: Path) -> int:
    """Batches an extract has journaled: lines of the pending shard's ``.done`` log."""
    if not journal.is_dir():
        return 0
    return sum(len(p.read_text().splitlines()) for p in journal.glob("*.done"))


def _save(model: onnx.ModelProto, path: Path, metadata: dict[str, object] | None = None) -> Path:
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    model.opset_import[0].version = 17
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_image_model(path: Path, seed: int = 0, metadata: bool = True) -> Path:
    """Conv(3->4, stride 2) -> 'fmap' (N, 4, 8, 8) and GlobalAveragePool -> 'pool' (N, 4)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["pixel_values", "w"], ["fmap"], strides=[2, 2], pads=[1] * 4),
        helper.make_node("GlobalAveragePool", ["fmap"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["pool"]),
    ]
    graph = helper.make_graph(
        nodes,
        "image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [
            helper.make_tensor_value_info("fmap", TensorProto.FLOAT, ["N", 4, 8, 8]),
            helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["N", 4]),
        ],
        [w],
    )
    taps = [
        {"name": "pool", "output": "pool", "shape": [4], "pooling": "avg", "stride": 2,
         "layer": "conv"},
        {"name": "fmap", "output": "fmap", "shape": [4, 8, 8], "pooling": "none", "stride": 2,
         "layer": "conv"},
    ]  # fmt: skip
    meta = {
        "embedkit.format": "1",
        "embedkit.backbone": "tiny_conv",
        "embedkit.preprocess": IMAGE_SPEC,
        "embedkit.taps": taps,
        "embedkit.precision": "fp32",
    }
    return _save(helper.make_model(graph), path, meta if metadata else None)


def make_tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str()


def make_text_model(path: Path, max_length: int = 8) -> Path:
    """Embedding lookup + masked mean over tokens -> 'sentence' (N, 8)."""
    rng = np.random.default_rng(1)
    table = numpy_helper.from_array(rng.normal(size=(len(WORDS), 8)).astype(np.float32), "emb")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axis1")
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tokens"]),  # (N, S, 8)
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes2"], ["mask3"]),  # (N, S, 1)
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),  # (N, 8)
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),  # (N, 1)
        helper.make_node("Div", ["total", "count"], ["sentence"]),
    ]
    axes2 = numpy_helper.from_array(np.array([2], np.int64), "axes2")
    graph = helper.make_graph(
        nodes,
        "text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "S"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", "S"]),
        ],
        [helper.make_tensor_value_info("sentence", TensorProto.FLOAT, ["N", 8])],
        [table, axes, axes2],
    )
    meta = {
        "embedkit.format": "1",
        "embedkit.backbone": "tiny_text",
        "embedkit.preprocess": {
            "kind": "text",
            "inputs": ["input_ids", "attention_mask", "token_type_ids"],
            "max_length": max_length,
        },
        "embedkit.taps": [
            {
                "name": "sentence",
                "output": "sentence",
                "shape": [8],
                "pooling": "mean",
                "stride": None,
                "layer": "emb",
            }
        ],  # fmt: skip
        "embedkit.tokenizer": make_tokenizer_json(),
    }
    return _save(helper.make_model(graph), path, meta)


def make_array_model(path: Path, dim: int = 6, out: int = 3, seed: int = 2) -> Path:
    """A plain ONNX file (no metadata): x (N, dim) @ W -> y (N, out)."""
    w = np.random.default_rng(seed).normal(size=(dim, out)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "array",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out])],
        [numpy_helper.from_array(w, "w")],
    )
    return _save(helper.make_model(graph), path)


def make_log_model(path: Path, dim: int = 6) -> Path:
    """A plain array model y = log(x) (N, dim): NaN for x < 0, -inf for x == 0."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dim])],
    )
    return _save(helper.make_model(graph), path)


def make_slow_model(path: Path, dim: int = 512, depth: int = 24) -> Path:
    """A plain array model that takes a while per item: ``depth`` x (MatMul + Tanh)."""
    w = (np.random.default_rng(3).normal(size=(dim, dim)) / np.sqrt(dim)).astype(np.float32)
    nodes, name = [], "x"
    for i in range(depth):
        nodes += [
            helper.make_node("MatMul", [name, "w"], [f"m{i}"]),
            helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]),
        ]
        name = f"t{i}"
    nodes.append(helper.make_node("Identity", [name], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(w, "w")],
    )
    return _save(helper.make_model(graph), path)


def make_slow_text_model(path: Path, dim: int = 256, depth: int = 16, max_length: int = 64):
    """The text model with ``depth`` x (MatMul + Tanh) per token: slow enough to kill."""
    rng = np.random.default_rng(6)
    table = rng.normal(size=(len(WORDS), dim)).astype(np.float32)
    w = (rng.normal(size=(dim, dim)) / np.sqrt(dim)).astype(np.float32)
    nodes, name = [helper.make_node("Gather", ["emb", "input_ids"], ["h"])], "h"  # (N, S, D)
    for i in range(depth):
        nodes += [
            helper.make_node("MatMul", [name, "w"], [f"m{i}"]),
            helper.make_node("Tanh", [f"m{i}"], [f"t{i}"]),
        ]
        name = f"t{i}"
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes2"], ["mask3"]),  # (N, S, 1)
        helper.make_node("Mul", [name, "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),  # (N, D)
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),  # (N, 1)
        helper.make_node("Div", ["total", "count"], ["sentence"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "S"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", "S"]),
        ],
        [helper.make_tensor_value_info("sentence", TensorProto.FLOAT, ["N", dim])],
        [
            numpy_helper.from_array(table, "emb"),
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.array([2], np.int64), "axes2"),
        ],
    )
    spec = {"kind": "text", "inputs": ["input_ids", "attention_mask"], "max_length": max_length}
    tap = {"name": "sentence", "output": "sentence", "shape": [dim], "pooling": "mean",
           "stride": None, "layer": "emb"}  # fmt: skip
    meta = {
        "embedkit.format": "1",
        "embedkit.backbone": "slow_text",
        "embedkit.preprocess": spec,
        "embedkit.taps": [tap],
        "embedkit.tokenizer": make_tokenizer_json(),
    }
    return _save(helper.make_model(graph), path, meta)


def write_texts(path: Path, n: int, seed: int = 7, longest: int = 60) -> Path:
    """``n`` lines of 1 to ``longest`` words from the tiny vocabulary (varied lengths)."""
    rng = np.random.default_rng(seed)
    words = WORDS[2:]
    lengths = np.minimum(rng.geometric(1 / 12, size=n), longest)
    lines = [" ".join(rng.choice(words, size=k)) for k in lengths]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_images(root: Path, per_class: int = 3) -> Path:
    """``root/{cat,dog}/i.png`` of assorted sizes and modes, plus nothing else."""
    rng = np.random.default_rng(4)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = 20 + 3 * i, 24 + 5 * i
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            (image.convert("L") if i == 2 else image).save(root / label / f"{i}.png")
    return root


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m embedkit ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "embedkit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
