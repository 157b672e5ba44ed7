"""``train.json``: what a head was trained on. Written by ``embedkit train``, read by
``embedkit predict`` and ``embedkit deploy``, through :class:`TrainRecord` only.

    embedkit train feats.h5 --head logreg --tap blocks.14+pool --out head/  # + head/train.json
    embedkit predict head/ other.h5        # checks other.h5 against head/train.json

The file keeps its JSON layout: ``taps`` (names), ``tap`` (their joined name), ``join``
(statistics of joined taps), ``features`` (the store's fingerprint, the ONNX model and its
sha256, the preprocessing, each tap's description, width and dtype) and the fit's report.

Examples
--------
>>> from embedkit.contract import Tap
>>> record = TrainRecord("logreg", (Tap("pool", (8,)),), ("cat", "dog"), features={"width": 8})
>>> again = TrainRecord.from_dict(record.to_dict())
>>> again == record, again.tap, again.taps[0].shape, again.class_names([1, 0])
(True, 'pool', (8,), ['dog', 'cat'])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embedkit.contract import Tap
from embedkit.errors import UserInputError
from embedkit.files import write_bytes_atomic
from embedkit.heads.tapsets import TapJoin, tap_set_name

TRAIN_JSON = "train.json"  # next to head.json


@dataclass(frozen=True)
class TrainRecord:
    """A head's ``train.json``: its taps, label names, join statistics and provenance."""

    head: str  # the registry name it was made with ("" when the record does not say)
    taps: tuple[Tap, ...]  # the taps the head reads, in join order
    label_names: tuple[str, ...] = ()  # class names by label index, as in the training store
    join: TapJoin | None = None  # per-tap statistics of the train rows, for joined taps (a+b)
    features: dict | None = None  # fingerprint, backbone_sha256, model, preprocess, width,
    #   dtype of the training store; None for heads saved without it (not checked, no deploy)
    store: str | None = None  # the training store's path
    params: dict = field(default_factory=dict)  # the head parameters given to train
    rows: dict = field(default_factory=dict)  # rows per part: {"train": .., "val": .., "test": ..}
    excluded: int = 0  # labelled training rows left out by --exclude
    excluded_val_kept: int = 0  # --exclude ids kept in the val rows (without --exclude-val)
    exclude_note: str | None = None  # what train prints about them
    accuracy: dict = field(default_factory=dict)  # per part
    fit: dict = field(default_factory=dict)  # epochs, best epoch, validation (fit_summary)
    labels_sha256: str | None = None  # of the (id, class) pairs it trained on (labels_digest)
    directory: Path | None = field(default=None, compare=False)  # where it was read from

    @property
    def tap(self) -> str:
        """The taps' joined name, e.g. ``"blocks.14+pool"``."""
        return tap_set_name(self.tap_names)

    @property
    def tap_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.taps)

    @property
    def where(self) -> Path:
        return Path(self.directory or ".") / TRAIN_JSON

    def class_names(self, classes) -> list[str]:
        """Names of ``head.classes_`` (label indices), by the training store's names."""
        return [class_name(c, self.label_names) for c in classes]

    def to_dict(self) -> dict:
        taps = [t.to_dict(dtype=False) for t in self.taps]
        features = None if self.features is None else {**self.features, "taps": taps}
        return {k: getattr(self, k) for k in _AS_IS} | {
            "head": self.head,
            "tap": self.tap,
            "taps": list(self.tap_names),
            "join": self.join.to_dict() if self.join else None,
            "label_names": list(self.label_names),
            "features": features,
        }

    @classmethod
    def from_dict(cls, info: dict, directory: Path | None = None) -> TrainRecord:
        features = None if info.get("features") is None else dict(info["features"])
        described = features.pop("taps") if features else None
        if described:
            taps = tuple(Tap.from_dict(t) for t in described)
        else:  # no feature record: the names alone
            names = info.get("taps") or [t for t in [info.get("tap")] if t]
            taps = tuple(Tap(name) for name in names)
        join = info.get("join")
        return cls(
            head=info.get("head") or "",
            taps=taps,
            label_names=tuple(info.get("label_names") or ()),
            join=TapJoin.from_dict(join) if join else None,
            features=features,
            directory=directory,
            **{k: info[k] for k in _AS_IS if info.get(k) is not None},  # else the default
        )

    def write(self, directory: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=1)
        write_bytes_atomic(Path(directory) / TRAIN_JSON, text.encode())

    @classmethod
    def read(cls, directory: str | Path) -> TrainRecord:
        """Read ``DIRECTORY/train.json``; a head saved by ``save_head`` alone has an empty one.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> head = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (head / "head.json").write_text("{}")  # a head saved by save_head alone
        >>> TrainRecord.read(head).features is None
        True
        """
        directory = Path(directory)
        if not (directory / "head.json").is_file():
            raise UserInputError(
                f"{directory / 'head.json'} not found; pass a head directory written by "
                "`embedkit train`, or a model written by `embedkit deploy`"
            )
        path = directory / TRAIN_JSON
        if not path.is_file():
            return cls("", (), directory=directory)
        try:
            info = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserInputError(f"{path}: not valid JSON ({exc}); retrain the head") from exc
        return cls.from_dict(info, directory)


# Fields written to and read from train.json as they are.
_AS_IS = ("store", "params", "rows", "excluded", "excluded_val_kept", "exclude_note",
          "accuracy", "fit", "labels_sha256")  # fmt: skip


def class_name(index, names: Sequence[str]) -> str:
    """The name of label index ``index`` in ``names``; the index itself where it has none."""
    return names[int(index)] if 0 <= int(index) < len(names) else str(index)


def feature_record(fs, taps, store: Path) -> tuple[tuple[Tap, ...], dict]:
    """The taps of ``fs`` a head reads, and what they were made with (``features``).

    ``embedkit predict`` checks a store (or the model it runs on raw inputs) against it,
    and ``embedkit deploy`` rebuilds the backbone side of the graph from it.
    """
    fp = fs.fingerprint
    infos = tuple(fs.tap_info(tap) for tap in taps)
    return infos, {
        "fingerprint": fp.digest,  # of the whole store: backbone, taps, preprocess, dtype
        "backbone_sha256": fp.backbone_sha256,  # "arrays" for a store of your own features
        **_model_paths(fs.provenance.get("model"), store),
        "preprocess": json.loads(fp.preprocess),
        "width": int(sum(np.prod(info.shape) for info in infos)),
        "dtype": fp.dtype,
    }


def _model_paths(model: str | None, store: Path) -> dict:
    """Where the store's ONNX file is: ``model`` (absolute when it can be found) and
    ``model_from_store`` (relative to the store's folder), so a head finds it from any
    working directory and after the store and model move together; ``backbone_sha256``
    checks it is the same file (:func:`embedkit.deploy.record.backbone`)."""
    path = Path(model or "")
    if model and model != "arrays" and not path.is_absolute():  # an older store's relative path
        path = next((b / path for b in (Path.cwd(), store.parent) if (b / path).is_file()), path)
    if not model or model == "arrays" or not path.is_absolute():
        return {"model": model, "model_from_store": None}
    path = Path(os.path.abspath(path))
    return {
        "model": str(path),
        "model_from_store": os.path.relpath(path, Path(os.path.abspath(store)).parent),
    }
