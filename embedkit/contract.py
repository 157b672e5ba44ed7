"""The contract between ``backbones`` and ``extract``: ONNX metadata keys, taps, preprocessing.

``embedkit export`` writes an ONNX file whose ``metadata_props`` follow this module;
``embedkit extract`` reads them back, and the feature store records the same taps
(docs/architecture.md, Contract 1). It imports neither torch nor onnx at import time.

>>> from embedkit.contract import Tap, parse_preprocess
>>> Tap("pool", (1280,), pooling="avg", stride=32).to_dict()["shape"]
[1280]
>>> parse_preprocess({"kind": "array", "input": "x"}, "spec.json").to_dict()
{'input': 'x', 'dtype': 'float32', 'kind': 'array'}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from embedkit.errors import UserInputError, check_known, require

# metadata_props keys; every value is a JSON string except the tokenizer's.
FORMAT = "embedkit.format"  # "1"
BACKBONE = "embedkit.backbone"  # the backbone name, e.g. "efficientnet_lite0"
PREPROCESS = "embedkit.preprocess"  # a preprocessing spec (ImageSpec, TextSpec, ArraySpec)
TAPS = "embedkit.taps"  # a list of Tap dicts, one per graph output that extract stores
TOKENIZER = "embedkit.tokenizer"  # text models: the Hugging Face tokenizer.json content
PRECISION = "embedkit.precision"  # "fp32", "fp16" or "int8"
EXPORT = "embedkit.export"  # the export options, torch version and opset
VERIFY = "embedkit.verify"  # the verification report vs torch
LABELS = "embedkit.labels"  # deployed models: class names, index = probabilities column
HEAD = "embedkit.head"  # deployed models: head class, taps, backbone sha256, store fingerprint
FORMAT_VERSION = "1"
PRECISIONS = ("fp32", "fp16", "int8")  # the values of embedkit.precision

SPATIAL_POOLINGS = ("none", "avg", "max", "avgmax", "gem")  # (N, C, H, W) maps
TOKEN_POOLINGS = ("none", "mean", "cls", "lasttoken")  # (N, L, D) token states
POOLINGS = (*SPATIAL_POOLINGS, *TOKEN_POOLINGS[1:])


def session_kwargs(providers: list[str]) -> dict[str, Any]:
    """Extra ``onnxruntime.InferenceSession`` arguments for a session on ``providers``.

    On the CPU, onnxruntime's ``SkipLayerNormFusion`` is turned off: its fused CPU
    kernel ran 2.4x-4.7x slower than the ``Add`` + ``LayerNormalization`` it replaces
    (onnxruntime 1.32, benchmarks/bench_int8_kernels.py: 41.1 ms against 12.1 ms on
    10,881 x 768 floats, 1 thread), so exported text encoders keep their layer norms
    unfused and every embedkit CPU session (export's checks, extract, predict) leaves them
    so (docs/backbones.md). CUDA keeps the fusion.

    Examples
    --------
    >>> session_kwargs(["CPUExecutionProvider"])
    {'disabled_optimizers': ['SkipLayerNormFusion']}
    >>> session_kwargs(["CUDAExecutionProvider", "CPUExecutionProvider"])
    {}
    """
    cpu = providers[:1] == ["CPUExecutionProvider"]
    return {"disabled_optimizers": ["SkipLayerNormFusion"]} if cpu else {}


@dataclass(frozen=True)
class Tap:
    """One feature set: a graph output in the ONNX metadata, a dataset in the store.

    Examples
    --------
    >>> Tap.from_dict({"name": "blocks.10", "output": "blocks_10", "shape": [112, 14, 14]})
    Tap(name='blocks.10', shape=(112, 14, 14), pooling='none', stride=None, layer=None, \
output='blocks_10', dtype='float32')
    """

    name: str  # the tap name, and the dataset name under /features in a store
    shape: tuple[int | None, ...] | None = None  # per item, no batch axis; None: unknown/dynamic
    pooling: str = "none"  # one of POOLINGS
    stride: int | None = None  # spatial reduction of the input, None for pooled/text taps
    layer: str | None = None  # the backbone layer the tap reads from
    output: str | None = None  # the ONNX output name that feeds this tap
    dtype: str = "float32"  # storage dtype in a store (left out of the ONNX metadata)

    def __post_init__(self):
        if self.shape is not None:
            shape = tuple(None if s is None else int(s) for s in self.shape)
            object.__setattr__(self, "shape", shape)
        if not self.name or "/" in self.name:
            raise UserInputError(f"tap name {self.name!r} must be non-empty and contain no '/'")

    def to_dict(self, *, dtype: bool = True) -> dict:
        """JSON-ready fields (``shape`` as a list); ``dtype=False`` for the ONNX metadata."""
        d = asdict(self)
        d["shape"] = None if self.shape is None else list(self.shape)
        if not dtype:
            del d["dtype"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Tap:
        """Build from a dict, ignoring keys that are not fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


_TAP_FIELDS = {  # field -> (accepted types, what it must be)
    "output": ((str, type(None)), "a string"),
    "shape": ((list, type(None)), "a list of positive integers"),
    "pooling": ((str, type(None)), "a string"),
    "stride": ((int, type(None)), "an integer"),
    "layer": ((str, type(None)), "a string"),
}


def tap_entry_problem(entry: object, seen: list[str]) -> str | None:
    """What is wrong with one entry of a taps list (``embedkit.taps``, a store's ``taps``)
    after the tap names ``seen``; None when it is a sound :class:`Tap` dict.

    >>> tap_entry_problem({"name": "pool", "shape": [8, -1]}, [])
    "field 'shape' must be a list of positive integers, got [8, -1]"
    """
    if not isinstance(entry, dict):
        return f"must be an object, got {type(entry).__name__}"
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        return f"has no 'name' (a non-empty string without '/'), got {name!r:.60}"
    if name in seen:
        return f"repeats tap name {name!r}"
    for key, (types, what) in _TAP_FIELDS.items():
        value = entry.get(key)
        bad = not isinstance(value, types) or isinstance(value, bool)
        if key == "shape" and isinstance(value, list):
            bad = not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value)
        if key in entry and bad:
            return f"field {key!r} must be {what}, got {value!r:.60}"
    return None


@dataclass(frozen=True)
class ImageSpec:
    """How to turn an image (file bytes or a uint8 array) into a model input."""

    input: str = "pixel_values"  # the graph input to feed
    size: tuple[int, int] = (224, 224)  # (height, width) fed to the model
    resize_shorter: int | None = None  # resize the shorter side to this, then crop; None: resize
    crop: str | None = None  # "center" or None (only used with resize_shorter)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # on the 0..255 scale: x = (pixel - mean) / std
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    color: str = "RGB"  # "RGB" or "L"
    layout: str = "NCHW"  # "NCHW" or "NHWC"
    interpolation: str = "bilinear"  # "bilinear" or "bicubic"
    dtype: str = "float32"  # "float32", "float16" or "uint8" (uint8: raw pixels, no mean/std)
    kind: str = "image"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (tuples as lists), as written to ``embedkit.preprocess``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TextSpec:
    """How to tokenize text with the model's ``embedkit.tokenizer``."""

    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")  # fed if declared
    max_length: int = 256  # truncation length in tokens; batches pad to their longest
    kind: str = "text"

    to_dict = ImageSpec.to_dict


@dataclass(frozen=True)
class ArraySpec:
    """How to feed rows of a numeric array."""

    input: str = "x"  # the graph input to feed
    dtype: str = "float32"  # cast rows to this before feeding
    kind: str = "array"

    to_dict = ImageSpec.to_dict


PreprocessSpec = ImageSpec | TextSpec | ArraySpec
_SPECS = {"image": ImageSpec, "text": TextSpec, "array": ArraySpec}
_CHOICES = {
    "color": ("RGB", "L"),
    "layout": ("NCHW", "NHWC"),
    "interpolation": ("bilinear", "bicubic"),
    "crop": ("center", None),
}
_DTYPES = {
    ImageSpec: ("float32", "float16", "uint8"),
    ArraySpec: ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"),
}
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def parse_preprocess(raw: dict[str, Any] | PreprocessSpec, where: str) -> PreprocessSpec:
    """Validate a preprocessing spec dict (the JSON form) and return its frozen dataclass.

    Examples
    --------
    >>> parse_preprocess({"kind": "array", "input": "x"}, "spec.json")
    ArraySpec(input='x', dtype='float32', kind='array')
    """
    if isinstance(raw, ImageSpec | TextSpec | ArraySpec):
        return raw
    kind = raw.get("kind") if isinstance(raw, dict) else raw
    if not isinstance(raw, dict) or not isinstance(kind, str) or kind not in _SPECS:
        raise UserInputError(
            f"{where}: preprocessing kind {kind!r} is not one of: {', '.join(_SPECS)}"
        )
    cls = _SPECS[kind]
    check_known(raw, [f.name for f in fields(cls)], f"{kind} preprocessing key", f" in {where}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    for key, choices in _CHOICES.items():
        if key in values and values[key] not in choices:
            raise UserInputError(
                f"{where}: {key}={values[key]!r} is not one of: "
                f"{', '.join(str(c) for c in choices)}"
            )
    spec = cls(**values)
    _check_fields(spec, where)
    return spec


def _check_fields(spec: PreprocessSpec, where: str) -> None:
    """Refuse values that would fail later or silently give wrong inputs, naming the field."""

    def bad(key: str, rule: str):
        value = getattr(spec, key)
        shown = list(value) if isinstance(value, tuple) else value
        return UserInputError(f"{where}: {key}={shown!r} is not valid: {rule}; fix {key!r}")

    def positive_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def numbers(value, count: int) -> bool:
        return (
            isinstance(value, tuple)
            and len(value) in (1, count)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and all(math.isfinite(v) for v in value)
        )

    if not isinstance(getattr(spec, "input", ""), str) or getattr(spec, "input", "x") == "":
        raise bad("input", "the name of a graph input")
    if type(spec) in _DTYPES and spec.dtype not in _DTYPES[type(spec)]:
        raise bad("dtype", f"one of {', '.join(_DTYPES[type(spec)])}")
    if isinstance(spec, ImageSpec):
        channels = 3 if spec.color == "RGB" else 1
        size = spec.size
        if not (isinstance(size, tuple) and len(size) == 2 and all(map(positive_int, size))):
            raise bad("size", "[height, width], two positive integers")
        if spec.resize_shorter is not None and not positive_int(spec.resize_shorter):
            raise bad("resize_shorter", "a positive integer (pixels), or null")
        if not numbers(spec.mean, channels):
            raise bad("mean", f"1 or {channels} finite numbers on the 0..255 scale")
        if not numbers(spec.std, channels) or min(spec.std) <= 0:
            raise bad("std", f"1 or {channels} numbers > 0 (x = (pixel - mean) / std)")
    if isinstance(spec, TextSpec):
        if not positive_int(spec.max_length):
            raise bad("max_length", "a positive number of tokens")
        inputs = spec.inputs
        if not isinstance(inputs, tuple) or not inputs or not set(inputs) <= set(_TEXT_INPUTS):
            raise bad("inputs", f"a list of: {', '.join(_TEXT_INPUTS)}")


def encode_metadata(values: dict[str, Any]) -> dict[str, str]:
    """``{key: value}`` to ``metadata_props`` strings: JSON, except the tokenizer's text.

    Examples
    --------
    >>> encode_metadata({FORMAT: FORMAT_VERSION, TAPS: [Tap("pool", (8,)).to_dict(dtype=False)]})
    {'embedkit.format': '"1"', 'embedkit.taps': '[{"name": "pool", "shape": [8], \
"pooling": "none", "stride": null, "layer": null, "output": null}]'}
    """
    return {k: v if k == TOKENIZER else json.dumps(v) for k, v in values.items()}


def set_metadata(model, values: dict[str, Any]) -> None:
    """Write ``values`` (encoded) into the ONNX ``model``'s ``metadata_props``, replacing
    the keys it holds already."""
    props = {p.key: p for p in model.metadata_props}
    for key, text in encode_metadata(values).items():
        prop = props.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, text


def decode_metadata(props: dict[str, str], where: str | os.PathLike) -> dict[str, Any]:
    """The ``embedkit.*`` entries of ``metadata_props``, JSON-decoded.

    A value that is not JSON is kept as text (files written by hand often hold bare
    strings), except the taps and the preprocessing spec: those raise naming ``where``.

    Examples
    --------
    >>> decode_metadata({"embedkit.format": '"1"', "embedkit.backbone": "tiny", "a": "b"}, "m")
    {'embedkit.format': '1', 'embedkit.backbone': 'tiny'}
    """
    out = {}
    for key, text in props.items():
        if not key.startswith("embedkit."):
            continue
        try:
            out[key] = text if key == TOKENIZER else json.loads(text)
        except json.JSONDecodeError as exc:
            if key not in (TAPS, PREPROCESS):
                out[key] = text
                continue
            raise UserInputError(
                f"{where}: metadata {key!r} is not valid JSON ({exc.msg}); re-export the model"
            ) from exc
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``embedkit.*`` metadata of an ONNX file, JSON-decoded (needs onnx).

    Examples
    --------
    >>> read_metadata("models/lite0.onnx")[TAPS][0]["shape"]  # doctest: +SKIP
    [1280]
    """
    onnx = require("onnx", "cpu", "reading ONNX files")
    model = onnx.load(str(path), load_external_data=False)
    return decode_metadata({p.key: p.value for p in model.metadata_props}, path)
