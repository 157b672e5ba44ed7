"""Heads on a feature store: train on its train split, stream it, predict every item.

The library side of ``embedkit train`` and ``embedkit predict``, and the streaming fit of a
store larger than memory:

    embedkit train feats.h5 --head mlp --param hidden=256 --exclude suspects.csv --out head/
    embedkit predict head/ feats.h5 --out preds.csv

Spatial taps (N, C, H, W) are flattened for every head except those tagged
``spatial_input`` (attention pooling).

Examples
--------
>>> import numpy as np, tempfile, os
>>> from embedkit.store import FeatureStore
>>> d = tempfile.mkdtemp(); rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
>>> FeatureStore.from_arrays(os.path.join(d, "f.h5"), X, y).close()
>>> m = train_on_store(os.path.join(d, "f.h5"), "logreg", os.path.join(d, "head"))
>>> m["accuracy"]["test"] > 0.9
True
>>> sorted(next(predict_store(os.path.join(d, "head"), os.path.join(d, "f.h5"))))
['confidence', 'id', 'label', 'pred', 'proba']
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError
from embedkit.heads.registry import STREAMING_HEADS, head_record, make_head

TRAIN_INFO = "train.json"  # next to head.json: the store, tap and label names it was trained on
_PREDICT_BLOCK = 8192


def train_on_store(
    store: str | Path,
    head_name: str,
    out: str | Path,
    *,
    tap: str | None = None,
    params: dict | None = None,
    split_val: float = 0.1,
    exclude: set[str] | None = None,
    seed: int = 0,
) -> dict:
    """Fit ``head_name`` on the train rows of ``store``, save it to ``out``, return metrics.

    Train rows are ``fs.split(val=split_val)["train"]`` minus unlabelled rows and the
    ``exclude`` ids (which leave train and val, never test); torch heads early-stop on
    the val rows, and accuracy is reported on train, val and test rows where they exist.
    """
    from embedkit.heads import save_head
    from embedkit.store import FeatureStore
    from embedkit.store.ids import check_known_ids

    head = make_head(head_name, **{"random_state": seed, **(params or {})})  # a param wins
    with FeatureStore(store) as fs:
        tap = fs.tap_info(tap).name  # raises for a tap the store lacks, naming its taps
        labels = fs.labels()
        parts = fs.split(val=split_val, seed=seed)
        ids = fs.ids()
        check_known_ids(exclude or set(), ids, store)  # as bench does: a typo excludes nothing
        excluded = np.isin(ids, list(exclude or ()))
        excluded[parts["test"]] = False  # --exclude leaves training; the test rows stay whole
        keep = (labels >= 0) & ~excluded
        parts = {name: rows[keep[rows]] for name, rows in parts.items()}
        if len(parts["train"]) < 2:
            raise UserInputError(
                f"{store}: only {len(parts['train'])} labelled train rows after --exclude; "
                "check the split (embedkit split) and the exclude file"
            )
        data = {name: (_load(fs, tap, rows, head), labels[rows]) for name, rows in parts.items()}
        label_names = fs.label_names
        features = feature_record(fs, tap, Path(store))
    (X, y), (X_val, y_val) = data["train"], data["val"]
    if head_record(head_name).torch and len(X_val):
        head.fit(X, y, X_val=X_val, y_val=y_val)
    else:
        head.fit(X, y)
    save_head(head, out)
    info = {
        "store": str(store),
        "tap": tap,
        "head": head_name,
        "params": params or {},
        "label_names": label_names,
        "rows": {name: int(len(rows)) for name, rows in parts.items()},
        "excluded": int((excluded & (labels >= 0)).sum()),
        "accuracy": {name: float(head.score(*xy)) for name, xy in data.items() if len(xy[0])},
        "features": features,
    }
    (Path(out) / TRAIN_INFO).write_text(json.dumps(info, indent=1))
    return info


def predict_store(head_dir: str | Path, store: str | Path, *, tap: str | None = None):
    """Yield one dict per item of ``store``: id, predicted label, probabilities, true label.

    The tap and label names default to those the head was trained with (``train.json``).
    Ids and labels are read once; features one block of rows at a time.
    """
    from embedkit.heads import load_head
    from embedkit.store import FeatureStore

    head = load_head(head_dir)
    info_path = Path(head_dir) / TRAIN_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    with FeatureStore(store) as fs:
        tap = fs.tap_info(tap or info.get("tap")).name
        _check_width(head, fs, tap, head_dir)
        names = info.get("label_names") or fs.label_names
        classes = [_name(c, names) for c in head.classes_]
        truth_names = fs.label_names  # the store's own names: its classes may be a subset
        ids = fs.ids()
        truth = fs.labels() if fs.has_labels else np.full(len(ids), -1)
        for lo in range(0, len(ids), _PREDICT_BLOCK):
            rows = slice(lo, min(lo + _PREDICT_BLOCK, len(ids)))
            proba = head.predict_proba(_load(fs, tap, rows, head))
            for item, p, true in zip(ids[rows], proba, truth[rows]):
                best = int(p.argmax())
                yield {
                    "id": str(item),
                    "pred": classes[best],
                    "confidence": float(p[best]),
                    "label": None if true < 0 else _name(true, truth_names),
                    "proba": dict(zip(classes, map(float, p))),
                }


def _check_width(head, fs, tap: str, head_dir) -> None:
    """Refuse a store whose tap has another width than the head's (even with --force)."""
    width = int(np.prod(fs.tap_info(tap).shape))
    trained = int(np.prod(getattr(head, "feature_shape_", (head.n_features_in_,))))
    if width != trained:
        raise UserInputError(
            f"{fs.path}: tap {tap!r} has {width} features per item, but the head in "
            f"{head_dir} was trained on {trained}; predict on a store of the same model and tap"
        )


def feature_record(fs, tap: str, store: Path) -> dict:
    """What the head's features were made with: ``train.json["features"]``.

    ``embedkit predict`` checks a store (or the model it runs on raw inputs) against it,
    and ``embedkit deploy`` rebuilds the backbone side of the graph from it.
    """
    fp = fs.fingerprint
    info = fs.tap_info(tap)
    return {
        "fingerprint": fp.digest,  # of the whole store: backbone, taps, preprocess, dtype
        "backbone_sha256": fp.backbone_sha256,  # "arrays" for a store of your own features
        "model": _model_path(fs.provenance.get("model"), store),
        "preprocess": json.loads(fp.preprocess),
        "taps": [{k: v for k, v in info.to_dict().items() if k != "dtype"}],
        "width": int(np.prod(info.shape)),
        "dtype": fp.dtype,
    }


def _model_path(model: str | None, store: Path) -> str | None:
    """The ONNX file the store was extracted with, absolute when it can be found."""
    if not model or Path(model).is_absolute():
        return model
    for base in (Path.cwd(), store.parent):
        if (base / model).is_file():
            return str((base / model).resolve())
    return model


def fit_store(
    head,
    store,
    *,
    tap: str | None = None,
    rows=None,
    block_rows: int = 4096,
    epochs: int = 5,
    classes=None,
    seed: int = 0,
    memory_limit: int = 256 << 20,
):
    """Train ``head`` by ``partial_fit`` over blocks of a store, holding one block at a time.

    Parameters
    ----------
    head : estimator with ``partial_fit(X, y, classes=...)``
        e.g. ``make_head("sgd")``.
    store : str, path or FeatureStore
        The feature store; a path is opened (and closed) here.
    tap : str or None
        The tap to read; None is the store's default tap.
    rows : None, slice or int array
        The rows to train on (e.g. ``fs.split()["train"]``); None is every labelled row.
    block_rows : int
        Rows per ``partial_fit`` call; memory holds about one block of features.
    epochs : int
        Passes over the rows, each in a new shuffled block order.
    classes : array or None
        All class labels; None reads them from the store's labels.
    seed : int
        Seed of the block order; epoch ``e`` uses ``seed + e``.
    memory_limit : int
        Bytes of features under which the selection is read into memory at once;
        above it, blocks are read in shuffled order and memory stays at a few blocks.

    Returns
    -------
    head : the fitted head.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.store import FeatureStore
    >>> from embedkit.heads import make_head
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> FeatureStore.from_arrays(path, X, y).close()
    >>> fit_store(make_head("sgd", random_state=0), path, block_rows=128).score(X, y) > 0.9
    True
    """
    if not hasattr(head, "partial_fit"):
        raise UserInputError(
            f"{type(head).__name__} cannot stream (no partial_fit); use one of: "
            f"{', '.join(STREAMING_HEADS)}"
        )
    if block_rows < 2 or epochs < 1:
        raise UserInputError(
            f"block_rows must be >= 2 and epochs >= 1; got block_rows={block_rows}, epochs={epochs}"
        )
    from embedkit.store import FeatureStore

    fs = FeatureStore(store) if isinstance(store, (str, os.PathLike)) else store
    try:
        if classes is None:
            labels = fs.labels(rows)
            classes = np.unique(labels[labels >= 0])
        for epoch in range(epochs):
            batches = fs.iter_batches(
                block_rows, tap=tap, rows=rows, shuffle=True, seed=seed + epoch, labels=True,
                memory_limit=memory_limit, block_rows=block_rows, buffer_blocks=2,
            )  # fmt: skip
            for X, y in batches:
                keep = y >= 0  # -1 marks unlabelled rows
                if keep.sum() >= 2:
                    head.partial_fit(X[keep], y[keep], classes=classes)
    finally:
        if fs is not store:
            fs.close()
    return head


def _load(fs, tap: str, rows, head) -> np.ndarray:
    """Features of ``rows``; maps (N, C, H, W) become (N, C*H*W) unless the head takes maps."""
    X = fs.features(tap, rows=rows)
    return X if head.spatial_input or X.ndim <= 2 else X.reshape(len(X), -1)


def _name(label, names: list[str]) -> str:
    index = int(label)
    return names[index] if 0 <= index < len(names) else str(label)
