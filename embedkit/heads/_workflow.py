"""Train a head on a store's train split, and predict a store with a saved head.

The library side of ``embedkit train`` and ``embedkit predict``:

    embedkit train feats.h5 --head mlp --param hidden=256 --exclude suspects.csv --out head/
    embedkit predict head/ feats.h5 --out preds.csv
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError

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
    """
    from embedkit.heads import TORCH_HEADS, make_head, save_head
    from embedkit.store import FeatureStore

    head = make_head(head_name, random_state=seed, **(params or {}))
    with FeatureStore(store) as fs:
        tap = _check_tap(fs, tap)
        labels = fs.labels()
        parts = fs.split(val=split_val, seed=seed)
        ids = fs.ids()
        excluded = np.isin(ids, list(exclude or ()))
        excluded[parts["test"]] = False  # --exclude leaves training; the test rows stay whole
        keep = (labels >= 0) & ~excluded
        parts = {name: rows[keep[rows]] for name, rows in parts.items()}
        if len(parts["train"]) < 2:
            raise UserInputError(
                f"{store}: only {len(parts['train'])} labelled train rows after --exclude; "
                "check the split (embedkit split) and the exclude file"
            )
        flat = head_name != "attnpool"
        data = {name: (_load(fs, tap, rows, flat), labels[rows]) for name, rows in parts.items()}
        label_names = fs.label_names
        features = feature_record(fs, tap, Path(store))
    X, y = data["train"]
    X_val, y_val = data["val"]
    if head_name in TORCH_HEADS and len(X_val):
        head.fit(X, y, X_val=X_val, y_val=y_val)
    else:
        head.fit(X, y)
    save_head(head, out)
    accuracy = {name: float(head.score(Xp, yp)) for name, (Xp, yp) in data.items() if len(Xp)}
    info = {
        "store": str(store),
        "tap": tap,
        "head": head_name,
        "params": params or {},
        "label_names": label_names,
        "rows": {name: int(len(rows)) for name, rows in parts.items()},
        "excluded": int((excluded & (labels >= 0)).sum()),
        "accuracy": accuracy,
        "features": features,
    }
    (Path(out) / TRAIN_INFO).write_text(json.dumps(info, indent=1))
    return info


def predict_store(head_dir: str | Path, store: str | Path, *, tap: str | None = None):
    """Yield one dict per item of ``store``: id, predicted label, probabilities, true label.

    The tap and label names default to those the head was trained with (``train.json``).
    """
    from embedkit.heads import load_head
    from embedkit.store import FeatureStore

    head = load_head(head_dir)
    info_path = Path(head_dir) / TRAIN_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    with FeatureStore(store) as fs:
        tap = _check_tap(fs, tap or info.get("tap"))
        names = info.get("label_names") or fs.label_names
        classes = [_name(c, names) for c in head.classes_]
        truth = fs.labels() if fs.has_labels else None
        truth_names = fs.label_names  # the store's own names: its classes may be a subset
        flat = type(head).__name__ != "AttnPoolHead"
        for lo in range(0, len(fs), _PREDICT_BLOCK):
            rows = slice(lo, min(lo + _PREDICT_BLOCK, len(fs)))
            proba = head.predict_proba(_load(fs, tap, rows, flat))
            best = proba.argmax(1)
            for i, (item, p, b) in enumerate(zip(fs.ids(rows), proba, best)):
                true = (
                    None
                    if truth is None or truth[lo + i] < 0
                    else _name(truth[lo + i], truth_names)
                )
                yield {
                    "id": str(item),
                    "pred": classes[b],
                    "confidence": float(p[b]),
                    "label": true,
                    "proba": dict(zip(classes, map(float, p))),
                }


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


def _check_tap(fs, tap: str | None) -> str:
    if tap is None:
        return fs.default_tap
    if tap not in fs.taps:
        raise UserInputError(f"{fs.path}: has no tap {tap!r}; its taps are: {', '.join(fs.taps)}")
    return tap


def _load(fs, tap: str, rows, flat: bool) -> np.ndarray:
    X = fs.features(tap, rows=rows)
    return X.reshape(len(X), -1) if flat and X.ndim > 2 else X  # (N, C, H, W) -> (N, C*H*W)


def _name(label, names: list[str]) -> str:
    index = int(label)
    return names[index] if 0 <= index < len(names) else str(label)
