"""Read an ONNX file as extract sees it: its inputs, taps and preprocessing.

The ONNX file and its ``embedkit.*`` metadata are the contract with ``backbones``
(docs/architecture.md, Contract 1); nothing here imports torch or ``backbones``.
A plain ONNX file works too: its taps are all graph outputs and its preprocessing
comes from a sidecar ``MODEL.onnx.json`` or ``--preprocess FILE.json``.

    embedkit extract lite0.onnx images/ --out feats.h5 --tap pool
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from embedkit import contract as C
from embedkit.contract import PreprocessSpec, Tap, parse_preprocess
from embedkit.errors import UserInputError, require
from embedkit.files import sha256_file


@dataclass(frozen=True)
class GraphTensor:
    """One graph input or output: its name, numpy dtype and shape (``None`` = dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]  # including the batch axis


@dataclass(frozen=True)
class ModelSpec:
    """Everything extract needs to know about an ONNX file before running it."""

    path: Path
    sha256: str  # of the file bytes (graph, weights and metadata)
    inputs: tuple[GraphTensor, ...]
    outputs: tuple[GraphTensor, ...]
    taps: tuple[Tap, ...]  # the graph outputs that extract stores
    preprocess: PreprocessSpec | None  # None: the source's items are fed as they are
    tokenizer: str | None = None  # the tokenizer.json content, text models only
    metadata: dict[str, object] = field(default_factory=dict)  # embedkit.*, JSON-decoded

    def input(self, name: str) -> GraphTensor:
        """Return the graph input called ``name``, or raise naming the valid ones."""
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        valid = ", ".join(t.name for t in self.inputs)
        raise UserInputError(
            f"{self.path}: the preprocessing names input {name!r} but the graph has: {valid}; "
            "fix 'input' in the preprocessing spec"
        )


def load_model(
    path: str | Path,
    *,
    preprocess: str | Path | dict | None = None,
    taps: list[str] | tuple[str, ...] | None = None,
) -> ModelSpec:
    """Read an ONNX file's inputs, outputs, taps and preprocessing without running it.

    Parameters
    ----------
    path : str or Path
        Any ONNX file; ``embedkit.*`` metadata is used when present.
    preprocess : str, Path or dict, optional
        A preprocessing spec (or a JSON file holding one, bare or as ``{"preprocess": ...}``)
        that overrides the metadata and the ``MODEL.onnx.json`` sidecar.
    taps : list of str, optional
        The tap names to keep (default: all of them).

    Examples
    --------
    >>> spec = load_model("lite0.onnx", taps=["pool"])  # doctest: +SKIP
    >>> spec.taps[0].shape  # doctest: +SKIP
    (1280,)
    """
    onnx = require("onnx", "cpu", "reading ONNX files")
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such model file; pass the path of an .onnx file")
    data = path.read_bytes()
    try:
        proto = onnx.ModelProto.FromString(data)  # external weights stay on disk
    except Exception as exc:  # onnx raises DecodeError, RuntimeError, ...
        raise UserInputError(
            f"{path}: not an ONNX model ({type(exc).__name__}); pass an .onnx file, "
            "e.g. one written by `embedkit export`"
        ) from exc
    graph = proto.graph
    if not graph.output:
        raise UserInputError(f"{path}: not an ONNX model (no graph outputs); pass an .onnx file")
    initializers = {init.name for init in graph.initializer}
    inputs = tuple(_tensor(v) for v in graph.input if v.name not in initializers)
    outputs = tuple(_tensor(v) for v in graph.output)
    meta = C.decode_metadata({p.key: p.value for p in proto.metadata_props}, path)
    return ModelSpec(
        path=path,
        sha256=sha256_file(*external_data_files(path, graph), prefix=data),  # + its weights
        inputs=inputs,
        outputs=outputs,
        taps=_select_taps(path, _read_taps(path, meta, outputs), taps),
        preprocess=_read_preprocess(path, meta, preprocess),
        tokenizer=meta.get(C.TOKENIZER),
        metadata=meta,
    )


def external_data_files(path: Path, graph) -> list[Path]:
    """The files the graph's ``external_data`` locations name, confined to the model's folder.

    Checked before any of their bytes is read: a location must be a relative path that
    stays inside the folder holding ``path`` (symbolic links resolved) and names a file.
    """
    folder = path.parent.resolve()
    entries = (entry for tensor in _tensors(graph) for entry in tensor.external_data)
    locations = sorted({entry.value for entry in entries if entry.key == "location"})
    files = []
    for location in locations:
        inside = "\0" not in location and not Path(location).is_absolute()
        external = (folder / location).resolve() if inside else folder
        if not inside or not external.is_relative_to(folder):
            raise UserInputError(
                f"{path}: external data location {location!r} is outside the model's folder; "
                "keep the weights file next to the model (a relative path, no '..')"
            )
        if not external.is_file():
            raise UserInputError(
                f"{path}: external data file {location!r} is missing; copy it next to the model"
            )
        files.append(external)
    return files


def _tensors(graph):
    """Every initializer of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)
            yield from attribute.tensors


def _tensor(value) -> GraphTensor:
    from onnx.helper import tensor_dtype_to_np_dtype

    ttype = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
    dtype = tensor_dtype_to_np_dtype(ttype.elem_type).name if ttype.elem_type else "float32"
    return GraphTensor(value.name, dtype, dims)


def _read_taps(path: Path, meta: dict, outputs: tuple[GraphTensor, ...]) -> list[Tap]:
    by_name = {o.name: o for o in outputs}
    if C.TAPS not in meta:  # a plain ONNX file: every output is a tap
        return [Tap(o.name, _item_shape(o.shape), output=o.name) for o in outputs]
    items = meta[C.TAPS]
    if not isinstance(items, list) or not items:
        raise UserInputError(
            f"{path}: metadata {C.TAPS!r} must be a non-empty list of taps, got "
            f"{type(items).__name__}; re-export the model"
        )
    taps = []
    for i, item in enumerate(items):
        problem = C.tap_entry_problem(item, [t.name for t in taps])
        if problem is not None:
            raise UserInputError(
                f"{path}: metadata 'embedkit.taps[{i}]' {problem}; re-export the model"
            )
        tap = Tap.from_dict({**item, "pooling": item.get("pooling") or "none"})
        output = tap.output or tap.name
        if output not in by_name:
            raise UserInputError(
                f"{path}: tap {tap.name!r} names output {output!r}, which the graph lacks "
                f"(outputs: {', '.join(by_name)}); re-export the model"
            )
        known = tap.shape is not None and None not in tap.shape
        shape = tap.shape if known else _item_shape(by_name[output].shape)
        taps.append(replace(tap, output=output, shape=shape, layer=tap.layer or None))
    return taps


def _item_shape(shape: tuple[int | None, ...]) -> tuple[int, ...] | None:
    per_item = shape[1:]
    return None if any(d is None for d in per_item) else tuple(per_item)


def _select_taps(path: Path, taps: list[Tap], wanted) -> tuple[Tap, ...]:
    if not wanted:
        return tuple(taps)
    by_name = {t.name: t for t in taps}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise UserInputError(
            f"{path}: unknown tap {unknown[0]!r}; this model has: {', '.join(by_name)}"
        )
    return tuple(by_name[w] for w in dict.fromkeys(wanted))


FULL_FRAME = "full-frame"  # --preprocess full-frame: the model's image spec, no resize+crop


def _read_preprocess(path: Path, meta: dict, override) -> PreprocessSpec | None:
    if isinstance(override, str) and override == FULL_FRAME:
        return full_frame(_read_preprocess(path, meta, None), path)
    if override is not None:
        if isinstance(override, PreprocessSpec):  # parsed by the caller (deploy: train.json)
            return override
        if isinstance(override, dict):
            return parse_preprocess(override.get("preprocess", override), "--preprocess")
        return _preprocess_file(Path(override))
    sidecar = path.with_name(path.name + ".json")
    if sidecar.is_file():
        return _preprocess_file(sidecar)
    if C.PREPROCESS in meta:
        return parse_preprocess(meta[C.PREPROCESS], f"{path} metadata")
    return None


def full_frame(spec: PreprocessSpec | None, where) -> PreprocessSpec:
    """The image ``spec`` with its shorter-side resize and centre crop cleared: the whole
    frame is resized to the input size (``--preprocess full-frame``).

    Photo recipes (EfficientNet: shorter side to 256, centre crop 224) cut an eighth off
    each border; items that fill their frame (Fashion-MNIST's 28x28, icons, crops of
    objects) lose part of the object. Use this for them.

    Examples
    --------
    >>> from embedkit.contract import ImageSpec
    >>> spec = ImageSpec(size=(224, 224), resize_shorter=256, crop="center")
    >>> full = full_frame(spec, "lite0.onnx")
    >>> full.size, full.resize_shorter, full.crop
    ((224, 224), None, None)
    """
    if not isinstance(spec, C.ImageSpec):
        kind = "no preprocessing spec" if spec is None else f"preprocess kind {spec.kind!r}"
        raise UserInputError(
            f"{where}: --preprocess {FULL_FRAME} needs an image model ({kind}); leave it out "
            "or pass a JSON spec"
        )
    return replace(spec, resize_shorter=None, crop=None)


def _preprocess_file(file: Path) -> PreprocessSpec:
    if not file.is_file():
        raise UserInputError(f"{file}: no such preprocessing file; pass a JSON spec")
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{file}: not a JSON preprocessing spec ({exc})") from exc
    if not isinstance(raw, dict):
        raise UserInputError(f"{file}: expected a JSON object with a 'kind' key")
    return parse_preprocess(raw.get("preprocess", raw), str(file))
