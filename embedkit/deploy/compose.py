"""One ONNX graph from raw model input to class probabilities: backbone + taps + head.

The backbone the head's features came from (checked by sha256) is joined with
``onnx.compose`` to a bridge that does what extract and the store did to its outputs
(cast to the storage dtype, flatten, for joined taps standardise and scale each one as
:class:`~embedkit.heads.tapsets.TapJoin` did, concatenate) and to the head graph of
:func:`~embedkit.deploy.head_graph.head_to_onnx`, whose names are prefixed ``head/``.
The result runs in plain onnxruntime; its metadata carries the preprocessing, the
tokenizer and the label names (docs/deploy.md shows a script that needs only those).

    embedkit deploy head/ --out model.onnx
    embedkit predict model.onnx new_images/ --out preds.csv
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedkit import __version__
from embedkit import contract as C
from embedkit.deploy.head_graph import FEATURES, LABEL, PROBABILITIES, head_to_onnx
from embedkit.deploy.record import backbone
from embedkit.errors import ExportError
from embedkit.files import save_onnx
from embedkit.heads import load_head
from embedkit.heads.tapsets import TapJoin
from embedkit.heads.train_record import TrainRecord

PREFIX = "head/"
# Metadata a deployed model keeps from its backbone (docs/architecture.md, Contract 1).
_COPIED = (C.FORMAT, C.BACKBONE, C.TOKENIZER, C.PRECISION)
_TOLERANCE = 1e-4  # max abs difference of head graph vs head.predict_proba, else an error


@dataclass(frozen=True)
class Deployed:
    """What :func:`deploy` wrote."""

    path: str
    head: str  # the head class, e.g. "LogRegHead"
    backbone: str  # the backbone name (or the ONNX file's stem)
    classes: tuple[str, ...]
    max_abs_diff: float  # head graph vs the head's predict_proba on random features
    nbytes: int

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.backbone} + {self.head}, {len(self.classes)} classes, "
            f"{self.nbytes / 1e6:.1f} MB; head graph max abs diff {self.max_abs_diff:.1e}"
        )


def deploy(head_dir: str | Path, out: str | Path, *, model: str | Path | None = None) -> Deployed:
    """Compose the head in ``head_dir`` with its backbone into one ONNX file ``out``.

    Parameters
    ----------
    head_dir : str or Path
        A directory written by ``embedkit train`` (its ``train.json`` names the model).
    out : str or Path
        The ``.onnx`` file to write: inputs as the backbone's, outputs ``probabilities``
        (N, K) float32 and ``label`` (N,) int64, the column of the most probable class.
    model : str or Path, optional
        The backbone ONNX file, when it has moved since training (same sha256).

    Examples
    --------
    >>> print(deploy("head/", "model.onnx"))  # doctest: +SKIP
    model.onnx: efficientnet_lite0 + LogRegHead, 10 classes, 13.6 MB; head graph max abs ...
    """
    import onnx

    record = TrainRecord.read(head_dir)
    spec = backbone(record, model)
    head = load_head(head_dir)
    name = type(head).__name__
    flat = not head.spatial_input  # the head takes (N, D) rows, not one tap's feature maps
    taps = record.taps
    if not flat and len(taps) != 1:  # train refuses it; a train.json edited by hand
        raise ExportError(f"{record.where}: an {name} reads one tap, got {len(taps)}")
    shape = (record.features["width"],) if flat else taps[0].shape
    base = onnx.load(str(spec.path))
    opset = next(o.version for o in base.opset_import if o.domain in ("", "ai.onnx"))
    head_model = head_to_onnx(head, shape, opset=opset)
    diff = _verify(head, head_model, shape)
    outputs = {t.name: t for t in spec.outputs}
    lacking = [t.output for t in taps if t.output not in outputs]
    if lacking:  # a train.json edited by hand
        raise ExportError(
            f"{record.where}: tap output {lacking[0]!r} is not an output of {spec.path} "
            f"(outputs: {', '.join(outputs)}); pass the head's backbone with --model"
        )
    tap_inputs = [(t.output, outputs[t.output].dtype, t.shape) for t in taps]
    merged = _join(base, head_model, tap_inputs, flat, record.features["dtype"], record.join)
    classes = record.class_names(head.classes_)
    _set_metadata(merged, spec, record, name, classes, diff)
    out = Path(out)
    # a failed or killed deploy leaves the old file; a backbone with a .onnx.data file
    # (dynamo exports, weights over 1 GiB) gives a deployed model with one too
    nbytes = save_onnx(merged, out, external=Path(f"{spec.path}.data").is_file())
    return Deployed(
        path=str(out),
        head=name,
        backbone=str(spec.metadata.get(C.BACKBONE, spec.path.stem)),
        classes=tuple(classes),
        max_abs_diff=diff,
        nbytes=nbytes,
    )


def _join(base, head_model, tap_inputs, flat: bool, dtype: str, join: TapJoin | None = None):
    """backbone -> bridge (cast, flatten, standardise joined taps, concat) -> head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    head_model = onnx.compose.add_prefix(head_model, PREFIX)
    graph = head_model.graph
    features = PREFIX + FEATURES
    bridge, parts, inputs = [], [], []
    for i, (_, tensor_dtype, tap_shape) in enumerate(tap_inputs):
        name = f"{PREFIX}tap{i}"
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(tensor_dtype))
        inputs.append(helper.make_tensor_value_info(name, elem, ["N", *tap_shape]))
        bridge.append(helper.make_node("Cast", [name], [f"{name}/f"], to=TensorProto.FLOAT))
        if dtype == "float16":  # the store held float16 features: round them the same way
            f16, f32 = TensorProto.FLOAT16, TensorProto.FLOAT
            bridge.append(helper.make_node("Cast", [f"{name}/f"], [f"{name}/16"], to=f16))
            bridge.append(helper.make_node("Cast", [f"{name}/16"], [f"{name}/32"], to=f32))
        if flat:  # (N, C, H, W) -> (N, C*H*W), as the head was trained
            bridge.append(helper.make_node("Flatten", [bridge[-1].output[0]], [f"{name}/flat"],
                                           axis=1))  # fmt: skip
        if join:  # (x - mean) * scale per feature, as TapJoin.transform
            for key, op in (("mean", "Sub"), ("scale", "Mul")):
                values = np.asarray(getattr(join, key)[i], dtype=np.float32)
                graph.initializer.append(numpy_helper.from_array(values, f"{name}/{key}"))
                bridge.append(helper.make_node(op, [bridge[-1].output[0], f"{name}/{key}"],
                                               [f"{name}/{op.lower()}"]))  # fmt: skip
        parts.append(bridge[-1].output[0])
    last = parts[0]
    if len(parts) > 1:
        last = f"{PREFIX}concat"
        bridge.append(helper.make_node("Concat", parts, [last], axis=1))  # (N, sum of widths)
    bridge.append(helper.make_node("Identity", [last], [features]))
    nodes = bridge + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [v for v in graph.input if v.name != features]
    del graph.input[:]
    graph.input.extend(inputs + kept)
    head_model.ir_version = base.ir_version
    io_map = [(output, f"{PREFIX}tap{i}") for i, (output, _, _) in enumerate(tap_inputs)]
    merged = onnx.compose.merge_models(  # keeps only the backbone nodes the taps need
        base, head_model, io_map, outputs=[PREFIX + PROBABILITIES, PREFIX + LABEL]
    )
    final = merged.graph
    for name in (PROBABILITIES, LABEL):  # plain output names for the user
        final.node.append(helper.make_node("Identity", [PREFIX + name], [name]))
    for value in final.output:
        value.name = value.name.removeprefix(PREFIX)
    del merged.metadata_props[:]
    onnx.checker.check_model(merged)
    return merged


def _verify(head, head_model, shape: tuple[int, ...]) -> float:
    """Run the head graph and ``head.predict_proba`` on the same random features."""
    from embedkit.extract.providers import import_onnxruntime

    ort = import_onnxruntime()
    X = np.random.default_rng(0).normal(size=(64, *shape)).astype(np.float32)
    session = ort.InferenceSession(
        head_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    proba, label = session.run([PROBABILITIES, LABEL], {FEATURES: X})
    expected = head.predict_proba(X.reshape(len(X), -1) if len(shape) == 1 else X)
    diff = float(np.abs(proba - expected).max())
    if not diff <= _TOLERANCE or not np.array_equal(label, proba.argmax(1)):
        raise ExportError(
            f"the ONNX graph of {type(head).__name__} differs from the head by {diff:.2e} "
            f"(tolerance {_TOLERANCE:.0e}); please report it with the head directory"
        )
    return diff


def _set_metadata(model, spec, record, head_name: str, classes: list[str], diff: float) -> None:
    meta = {k: spec.metadata[k] for k in _COPIED if k in spec.metadata}
    meta.setdefault(C.FORMAT, C.FORMAT_VERSION)
    meta.setdefault(C.BACKBONE, spec.path.stem)
    meta[C.PREPROCESS] = record.features["preprocess"]
    tap = C.Tap(PROBABILITIES, (len(classes),), layer="head", output=PROBABILITIES)
    meta[C.TAPS] = [tap.to_dict(dtype=False)]
    meta[C.LABELS] = list(classes)
    meta[C.HEAD] = {
        "class": head_name,
        "taps": list(record.tap_names),
        "backbone_sha256": record.features["backbone_sha256"],
        "store_fingerprint": record.features["fingerprint"],
        "embedkit": __version__,
    }
    meta[C.VERIFY] = {"head_max_abs_diff": diff, "head_inputs": 64}
    C.set_metadata(model, meta)
