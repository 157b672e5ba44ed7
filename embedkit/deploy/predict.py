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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedkit import contract as C
from embedkit.deploy.convert import PROBABILITIES
from embedkit.deploy.record import backbone, check_store, read_record
from embedkit.errors import UserInputError


@dataclass(frozen=True)
class Predictions:
    """Predictions for the items of one source, in source order (bad items left out)."""

    ids: tuple[str, ...]
    labels: tuple[str, ...]  # the predicted class name per item
    probabilities: np.ndarray  # (N, K), columns in the order of ``classes``
    classes: tuple[str, ...]  # class names
    truth: tuple[str | None, ...]  # the source's own label per item, None where it has none

    def __len__(self) -> int:
        return len(self.ids)

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable class names (N, k) and their probabilities (N, k)."""
        if k < 1:
            raise UserInputError(f"--top-k {k}: pass a positive number of classes")
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]  # (N, k)
        names = np.asarray(self.classes, dtype=object)[order]
        return names, np.take_along_axis(self.probabilities, order, axis=1)

    def records(self, top_k: int | None = None) -> Iterator[dict[str, Any]]:
        """One dict per item: id, pred, confidence, label (true), then the probabilities.

        Without ``top_k``: ``proba`` maps every class to its probability; with it,
        ``top`` lists the ``top_k`` most probable ``[class, probability]`` pairs.
        """
        best = self.probabilities.max(1) if len(self) else np.zeros(0)
        top = self.top_k(top_k) if top_k else None
        for i, item in enumerate(self.ids):
            record = {
                "id": item,
                "pred": self.labels[i],
                "confidence": float(best[i]),
                "label": self.truth[i],
            }
            if top is None:
                record["proba"] = dict(zip(self.classes, map(float, self.probabilities[i])))
            else:
                record["top"] = [[n, float(p)] for n, p in zip(top[0][i], top[1][i])]
            yield record

    def columns(self, top_k: int | None = None) -> dict[str, Any]:
        """The predictions as columns (the CSV's, typed): id, pred, confidence, label, then
        ``p_<class>`` per class, or ``top<r>``/``p_top<r>`` for ranks 1..``top_k``.

        Examples
        --------
        >>> p = Predictions(("a",), ("cat",), np.array([[0.75, 0.25]]), ("cat", "dog"), (None,))
        >>> list(p.columns()), p.columns(top_k=1)["top1"].tolist()
        (['id', 'pred', 'confidence', 'label', 'p_cat', 'p_dog'], ['cat'])
        """
        probs = self.probabilities
        cols: dict[str, Any] = {
            "id": list(self.ids),
            "pred": list(self.labels),
            "confidence": probs.max(1) if len(self) else np.zeros(0),
            "label": list(self.truth),
        }
        if top_k:
            names, p = self.top_k(top_k)
            for r in range(names.shape[1]):
                cols[f"top{r + 1}"], cols[f"p_top{r + 1}"] = names[:, r], p[:, r]
        else:
            cols |= {f"p_{name}": probs[:, j] for j, name in enumerate(self.classes)}
        return cols


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

    Returns
    -------
    Predictions

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
    record = read_record(path)
    if _is_store(source):
        from embedkit.store import FeatureStore

        with FeatureStore(source) as fs:
            check_store(record, fs, force=force)
        return _from_store(path, source, record)
    from embedkit.extract import extract

    spec = backbone(record, model)
    feats = record.features
    taps = tuple(t["name"] for t in record.taps)
    with tempfile.TemporaryDirectory(prefix="embedkit-predict-") as tmp:
        store = Path(tmp) / "features.h5"
        run = {**options, "taps": taps, "preprocess": feats["preprocess"], "dtype": feats["dtype"]}
        extract(spec.path, source, store, config, **run)
        from embedkit.store import FeatureStore

        with FeatureStore(store) as fs:
            check_store(record, fs)  # holds by construction; guards the recorded taps
        return _from_store(path, store, record)


def _is_store(source) -> bool:
    import h5py

    path = Path(source)  # a damaged .h5 is a store that gets the store's error
    return path.is_file() and (path.suffix in (".h5", ".hdf5") or h5py.is_hdf5(str(path)))


def _from_store(head_dir: Path, store, record) -> Predictions:
    from embedkit.heads import predict_store

    tap = record.taps[0]["name"] if len(record.taps) == 1 else None
    rows = list(predict_store(head_dir, store, tap=tap))
    classes = tuple(rows[0]["proba"]) if rows else tuple(record.label_names)
    return Predictions(
        ids=tuple(r["id"] for r in rows),
        labels=tuple(r["pred"] for r in rows),
        probabilities=np.array([list(r["proba"].values()) for r in rows]).reshape(
            len(rows), len(classes)
        ),
        classes=classes,
        truth=tuple(r["label"] for r in rows),
    )


def _run_deployed(path: Path, source, config, options: dict) -> Predictions:
    from embedkit.extract import extract, load_model
    from embedkit.store import FeatureStore

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
            proba = fs.features(PROBABILITIES)  # (N, K)
            names = fs.label_names
            labels = fs.labels().tolist() if fs.has_labels else [-1] * len(fs)
            truth = tuple(None if t < 0 else names[t] for t in labels)
            ids = tuple(str(i) for i in fs.ids())
    return Predictions(
        ids=ids,
        labels=tuple(classes[i] for i in proba.argmax(1)),
        probabilities=proba,
        classes=classes,
        truth=truth,
    )
