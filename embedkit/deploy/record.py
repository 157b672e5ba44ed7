"""The checks that predict and deploy run against a head's ``train.json``.

``embedkit train`` writes ``train.json`` next to the head
(:class:`~embedkit.heads.train_record.TrainRecord`); its ``features`` entry names the
store's fingerprint, the ONNX model (path and sha256), the preprocessing, the taps and the
feature width. A store, or a model run on raw inputs, must match it:

    embedkit predict head/ other.h5        # refused when other.h5 came from another model
    embedkit predict head/ photos/ --model moved/lite0.onnx
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from embedkit.contract import parse_preprocess
from embedkit.errors import UserInputError, short
from embedkit.heads.train_record import TrainRecord


def backbone(record: TrainRecord, model: str | Path | None = None):
    """The ONNX model the head's features came from, checked by sha256.

    ``model`` replaces the recorded path (a moved file); its content must still match.
    Returns the :class:`~embedkit.extract.ModelSpec`, with the recorded preprocessing.
    """
    from embedkit.extract import load_model

    feats = record.features
    if feats is None:
        raise UserInputError(
            f"{record.where} does not record the model the features came from; retrain the "
            "head with `embedkit train` to predict on raw inputs"
        )
    if feats["backbone_sha256"] == "arrays" or not feats.get("model"):
        raise UserInputError(
            f"{record.where}: the head was trained on features you supplied, not a model's; "
            f"predict on a store of the same features: embedkit predict {record.directory} STORE"
        )
    path = Path(model) if model else _find_model(record)
    if not path.is_file():
        what = "no such model file" if model else "the model the head was trained with is missing"
        raise UserInputError(f"{path}: {what}; pass the model's path with --model FILE.onnx")
    raw = feats["preprocess"]  # checked here so that a bad one names train.json
    preprocess = parse_preprocess(raw, f"{record.where} features.preprocess") if raw else raw
    spec = load_model(path, preprocess=preprocess)
    if spec.sha256 != feats["backbone_sha256"]:
        raise UserInputError(
            f"{path}: changed since the head was trained (sha256 {spec.sha256[:12]}, trained "
            f"with {feats['backbone_sha256'][:12]}); pass the original with --model, or "
            "retrain the head on features of this model"
        )
    return spec


def _find_model(record: TrainRecord) -> Path:
    """The recorded model: its absolute path, else the path relative to the head folder
    (``model_from_head``: head and model moved together), else relative to the training
    store (``model_from_store``); the caller checks the sha256 of whichever exists."""
    feats = record.features or {}
    recorded = Path(feats["model"])
    candidates = [recorded]
    if feats.get("model_from_head"):
        candidates.append(record.directory / feats["model_from_head"])
    if feats.get("model_from_store") and record.store:
        candidates.append(Path(record.store).parent / feats["model_from_store"])
    return next((p for p in candidates if p.is_file()), recorded)


def check_store(record: TrainRecord, fs, *, force: bool = False) -> None:
    """Raise when store ``fs`` was made otherwise than the head's training store.

    The backbone sha256, the preprocessing and the description of each tap the head
    reads are compared; the error names the first field that differs. ``force`` turns
    the error into a warning. A head without a record is not checked.
    """
    feats = record.features
    if feats is None:
        return
    fp = fs.fingerprint
    pairs = [
        ("backbone_sha256", fp.backbone_sha256, feats["backbone_sha256"]),
        ("preprocess", json.loads(fp.preprocess), feats["preprocess"]),
    ]
    for tap in record.taps:
        stored = fs.tap_info(tap.name).to_dict(dtype=False) if tap.name in fs.taps else None
        pairs.append((f"tap {tap.name!r}", stored, tap.to_dict(dtype=False)))
    for field, stored, trained in pairs:
        if stored != trained:
            field, stored, trained = _first_difference(field, stored, trained)
            message = (
                f"{fs.path}: made with a different {field} than the head in {record.directory} was "
                f"trained on (store: {_short(stored)}; head: {_short(trained)})"
            )
            if not force:
                raise UserInputError(
                    f"{message}; predict on the raw inputs instead "
                    f"(embedkit predict {record.directory} SOURCE), or pass --force"
                )
            warnings.warn(f"{message}; predicting anyway (--force)", UserWarning, stacklevel=2)
            return


def _first_difference(field: str, a, b):
    """Narrow two differing dicts down to the first key that differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        return f"{field} {key}", a.get(key), b.get(key)
    return field, a, b


def _short(value) -> str:
    if isinstance(value, str) and len(value) == 64:  # a sha256
        return value[:12]
    return short(value, 60, show=lambda v: v if isinstance(v, str) else json.dumps(v))
