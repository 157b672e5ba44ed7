"""Predict with a trained head or a deployed model, on a store or on raw inputs.

Raw inputs (an image folder, .txt, .csv/.jsonl, .npy) go through ``embedkit.extract``
itself, into a scratch store that is deleted afterwards: the same sources, batching,
prefetching, progress bar and ``--skip-bad`` handling, with the model and preprocessing
recorded when the head was trained (checked by sha256). A store is checked against that
record before the head reads it.

    embedkit predict head/ new_images/ --out preds.csv --top-k 3
    embedkit predict head/ feats.h5 --out preds.csv
    embedkit predict model.onnx new_images/ --out preds.csv     # from embedkit deploy
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import h5py

from embedkit import contract as C
from embedkit.deploy.head_graph import PROBABILITIES
from embedkit.deploy.record import backbone, check_store
from embedkit.errors import UserInputError
from embedkit.heads.from_store import Predictions, predict_store
from embedkit.heads.train_record import TrainRecord
from embedkit.store import FeatureStore


def predict(
    head_or_model: str | Path,
    source: str | Path,
    *,
    model: str | Path | None = None,
    force: bool = False,
    config=None,
    **options: Any,
) -> Predictions:
    """Predict every item of ``source`` with a trained head or a deployed model.

    Parameters
    ----------
    head_or_model : str or Path
        A head directory written by ``embedkit train``, or an ``.onnx`` file written by
        ``embedkit deploy``.
    source : str or Path
        A feature store (head directories only), or raw inputs: an image folder, a
        ``.txt``, ``.csv``/``.jsonl`` or ``.npy`` file, run through the recorded model.
    model : str or Path, optional
        The backbone ONNX file when it has moved since training (its sha256 must match).
    force : bool
        Predict on a store made by another model or preprocessing, with a warning.
    config : ExtractConfig, optional
        Extraction options for raw inputs; keyword ``options`` override its fields
        (``batch_size=64``, ``device="cpu"``, ``skip_bad=True``, ``progress=False``, ...).

    Examples
    --------
    >>> p = predict("head/", "new_images/", batch_size=64)  # doctest: +SKIP
    >>> p.ids[0], p.labels[0], p.probabilities.shape  # doctest: +SKIP
    ('cat/1.jpg', 'cat', (20, 2))
    """
    path = Path(head_or_model)
    if not Path(source).exists():
        raise UserInputError(
            f"{source}: no such file or folder; pass a store or raw inputs to predict"
        )
    if path.is_file():
        return _run_deployed(path, source, config, options)
    record = TrainRecord.read(path)
    if _is_store(source):
        with FeatureStore(source) as fs:
            check_store(record, fs, force=force)
        return _from_store(path, source, record)
    from embedkit.extract import extract

    spec, feats = backbone(record, model), record.features  # the model is checked by sha256
    run = {"taps": record.tap_names, "preprocess": feats["preprocess"], "dtype": feats["dtype"]}
    with tempfile.TemporaryDirectory(prefix="embedkit-predict-") as tmp:
        store = Path(tmp) / "features.h5"
        extract(spec.path, source, store, config, **(options | run))
        return _from_store(path, store, record)


def _is_store(source) -> bool:
    path = Path(source)  # a damaged .h5 is a store that gets the store's error
    return path.is_file() and (path.suffix in (".h5", ".hdf5") or h5py.is_hdf5(str(path)))


def _from_store(head_dir: Path, store, record: TrainRecord) -> Predictions:
    return predict_store(head_dir, store, tap=record.tap if len(record.taps) == 1 else None)


def _run_deployed(path: Path, source, config, options: dict) -> Predictions:
    from embedkit.extract import extract, load_model

    if _is_store(source):
        raise UserInputError(
            f"{source}: {path.name} is a deployed model and runs on raw inputs; pass images, "
            "text or arrays (a store goes with a head directory)"
        )
    spec = load_model(path)
    if C.LABELS not in spec.metadata:
        raise UserInputError(
            f"{path}: not a model written by `embedkit deploy` (no {C.LABELS!r} metadata); "
            "pass a deployed model or a head directory"
        )
    classes = tuple(spec.metadata[C.LABELS])
    with tempfile.TemporaryDirectory(prefix="embedkit-predict-") as tmp:
        store = Path(tmp) / "probabilities.h5"
        extract(path, source, store, config, **{**options, "taps": (PROBABILITIES,)})
        with FeatureStore(store) as fs:
            return Predictions.of(fs, fs.features(PROBABILITIES), classes)  # (N, K)
