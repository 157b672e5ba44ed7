"""Heads on a feature store: train on its train split, stream it, predict every item.

The library side of ``embedkit train`` and ``embedkit predict``, and the streaming fit of a
store larger than memory:

    embedkit train feats.h5 --head mlp --param hidden=256 --exclude suspects.csv --out head/
    embedkit train feats.h5 --head logreg --tap blocks.14+pool --val 0.1 --out head/
    embedkit predict head/ feats.h5 --out preds.csv

Spatial taps (N, C, H, W) are flattened for every head except those tagged
``spatial_input`` (attention pooling). Several taps are joined into one row as
:mod:`embedkit.heads.tapsets` describes; the head's ``train.json`` records its taps and
their statistics, and ``predict`` reads the same taps the same way.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from embedkit.rows import from_arrays
>>> d = tempfile.mkdtemp(); rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
>>> from_arrays(os.path.join(d, "f.h5"), X, y).close()
>>> m = train_on_store(os.path.join(d, "f.h5"), "logreg", os.path.join(d, "head"))
>>> m.accuracy["test"] > 0.9
True
>>> p = predict_store(os.path.join(d, "head"), os.path.join(d, "f.h5"))
>>> p.probabilities.shape, p.classes
((300, 2), ('0', '1'))
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import UserInputError
from embedkit.heads._persist import load_head, save_head
from embedkit.heads._progress import epoch_progress
from embedkit.heads._validation import check_finite_parts
from embedkit.heads.registry import STREAMING_HEADS, head_record, make_head
from embedkit.heads.rows import select_rows
from embedkit.heads.tapsets import (
    JOIN,
    loop_taps,
    parse_tap_set,
    read_joined,
    read_taps,
    tap_set_name,
)
from embedkit.heads.train_record import TrainRecord, class_name, feature_record
from embedkit.store import FeatureStore

_PREDICT_BLOCK = 8192


def train_on_store(
    store: str | Path,
    head_name: str,
    out: str | Path,
    *,
    tap: str | Sequence[str] | None = None,
    params: dict | None = None,
    val: float = 0.1,
    exclude: set[str] | None = None,
    exclude_val: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> TrainRecord:
    """Fit ``head_name`` on the train rows of ``store``, save it to ``out``; its record.

    ``tap`` is one tap, a joined tap set (``"blocks.14+pool"``, or a list of taps, joined
    as :mod:`embedkit.heads.tapsets` describes), or None for the store's default tap.
    Rows are chosen by :func:`embedkit.heads.rows.select_rows` (``val`` and ``exclude`` as
    there; a store without test rows holds out 20% in memory). Torch heads early-stop on
    the val rows; accuracy is reported on train, val and test rows where they exist, and
    ``"fit"`` says how the fit went (epochs, best epoch).
    ``progress`` prints a line to stderr every 10 s of a long torch fit. The returned
    :class:`~embedkit.heads.train_record.TrainRecord` is saved as ``out/train.json``.
    """
    head = make_head(head_name, **{"random_state": seed, **(params or {})})  # a param wins
    with FeatureStore(store) as fs:
        taps = tap_set_of(fs, tap, head)
        labels = fs.labels()
        rows = select_rows(fs, val=val, test=0.2, seed=seed, exclude=exclude,
                           exclude_val=exclude_val)  # fmt: skip
        if len(rows.train) < 2:
            why = " after --exclude" if rows.excluded_train else ""
            raise UserInputError(
                f"{store}: only {len(rows.train)} labelled training rows{why} (rows marked train "
                "or unset, see docs/splits.md); label more rows, or check the exclude file"
            )
        parts = {"train": rows.train, "val": rows.val, "test": rows.test}
        if head_record(head_name).semi:  # the unlabelled training rows (-1) join its fit
            parts["train"] = np.union1d(rows.train, rows.unlabelled)
            taps = loop_taps(fs, parts["train"], tap)  # by default, the taps select reads
        # several taps: joined by the statistics of the train rows only
        flat = not head.spatial_input
        join, feats = read_joined(fs, taps, parts["train"], *parts.values(), flatten=flat)
        data = {name: (X, labels[r]) for (name, r), X in zip(parts.items(), feats)}
        check_finite_parts(fs, tap_set_name(taps), data, parts)
        label_names = fs.label_names
        tap_infos, features = feature_record(fs, taps, Path(store))
        labels_sha256 = labels_digest(fs.ids(rows.train), labels[rows.train], label_names)
    (X, y), (X_val, y_val) = data["train"], data["val"]
    given_val = bool(len(X_val)) and head_record(head_name).torch  # torch heads take val rows
    with epoch_progress(enabled=progress):
        head.fit(X, y, **({"X_val": X_val, "y_val": y_val} if given_val else {}))
    save_head(head, out)
    if features.get("model_from_store"):  # head, store and model may move together
        features["model_from_head"] = os.path.relpath(features["model"], os.path.abspath(out))
    record = TrainRecord(
        head=head_name,
        taps=tap_infos,
        label_names=tuple(label_names),
        join=join,
        features=features,
        store=os.path.abspath(store),
        params=params or {},
        rows={name: int(len(part)) for name, part in parts.items()},
        excluded=rows.excluded_train,
        excluded_val_kept=rows.excluded_val_kept,
        exclude_note=rows.exclude_note(),
        accuracy={
            name: float(head.score(X_[y_ >= 0], y_[y_ >= 0]))
            for name, (X_, y_) in data.items()
            if (y_ >= 0).any()
        },
        fit=fit_summary(head, given_val=given_val),
        labels_sha256=labels_sha256,
    )
    record.write(out)
    return record


def labels_digest(ids: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> str:
    """sha256 of the labelled rows' ``id<TAB>class`` lines in id order: which labels a head saw.

    Examples
    --------
    >>> labels_digest(np.array(["b", "a", "c"]), np.array([1, 0, -1]), ["cat", "dog"])[:12]
    '29f0f32ed757'
    """
    known = labels >= 0
    pairs = sorted(zip(np.asarray(ids)[known].tolist(), np.asarray(labels)[known].tolist()))
    text = "".join(f"{item}\t{class_name(c, names)}\n" for item, c in pairs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tap_set_of(fs, tap: str | Sequence[str] | None, head=None) -> tuple[str, ...]:
    """The taps a head reads: ``None`` = the store's default; ``"a+b"`` or ``[a, b]`` joined."""
    if tap is None:
        return (fs.default_tap,)
    text = tap if isinstance(tap, str) else JOIN.join(str(t) for t in tap)
    if "," in text:
        raise UserInputError(
            f"--tap {text!r}: train fits one head on one tap set; join taps with + "
            "(e.g. blocks.14+pool), or compare taps with embedkit bench --taps a,b"
        )
    taps = parse_tap_set(text, fs.taps, store=fs.path)
    if head is not None and head.spatial_input and len(taps) > 1:
        raise UserInputError(
            f"{type(head).__name__} reads one tap's feature maps; give one --tap, not "
            f"{tap_set_name(taps)!r}"
        )
    return taps


def fit_summary(head, *, given_val: bool) -> dict:
    """How a fit went: epochs run, best epoch and its validation score, or iterations.

    Examples
    --------
    >>> from embedkit.heads import make_head
    >>> head = make_head("logreg").fit(np.eye(4), [0, 1, 0, 1])
    >>> sorted(fit_summary(head, given_val=False))
    ['epochs', 'iterations']
    """
    history = getattr(head, "history_", None)
    if not history:
        n_iter = getattr(head, "n_iter_", None)
        return {"epochs": None, "iterations": None if n_iter is None else int(np.max(n_iter))}
    best = getattr(head, "best_epoch_", None)
    at_best = next((r for r in history if r["epoch"] == best), None)
    where = "the val split" if given_val else "a hold-out of the train rows"
    return {
        "epochs": len(history),
        "best_epoch": best,
        "val_loss": at_best and at_best["val_loss"],
        "val_accuracy": at_best and at_best["val_accuracy"],
        "validation": where if history[-1].get("val_loss") is not None else None,
    }


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

    @classmethod
    def of(cls, fs, proba: np.ndarray, classes: tuple[str, ...]) -> Predictions:
        """The predictions ``proba`` (N, K) for the rows of the open store ``fs``: their ids,
        the most probable class, and the store's own label names as the truth."""
        names = fs.label_names  # the store's own names: its classes may be a subset
        truth = fs.labels().tolist() if fs.has_labels else [-1] * len(fs)
        return cls(
            tuple(str(i) for i in fs.ids()),
            tuple(classes[i] for i in proba.argmax(1)),
            proba,
            classes,
            tuple(None if t < 0 else class_name(t, names) for t in truth),
        )

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


def predict_store(head_dir: str | Path, store: str | Path, *, tap: str | None = None):
    """:class:`Predictions` of the head in ``head_dir`` for every item of ``store``.

    The taps (and, for joined taps, their statistics) and label names default to those
    the head was trained with (``train.json``). Features are read one block of rows at
    a time.
    """
    head = load_head(head_dir)
    record = TrainRecord.read(head_dir)
    join = record.join
    with FeatureStore(store) as fs:
        taps = tap_set_of(fs, tap or record.tap_names or None, head)
        if len(taps) > 1 and (join is None or join.taps != taps):
            raise UserInputError(
                f"{head_dir} was trained on {record.tap!r}; predict with its own taps "
                "(leave out --tap)"
            )
        # another width than the head's is refused (even with --force)
        width = int(sum(np.prod(fs.tap_info(tap).shape) for tap in taps))
        trained = int(np.prod(getattr(head, "feature_shape_", (head.n_features_in_,))))
        if width != trained:
            raise UserInputError(
                f"{fs.path}: tap {tap_set_name(taps)!r} has {width} features per item, but the "
                f"head in {head_dir} was trained on {trained}; predict on a store of the same "
                "model and tap"
            )
        names = list(record.label_names) or fs.label_names
        classes = tuple(class_name(c, names) for c in head.classes_)
        flat = not head.spatial_input
        blocks = [slice(lo, lo + _PREDICT_BLOCK) for lo in range(0, len(fs), _PREDICT_BLOCK)]
        proba = np.concatenate(
            [head.predict_proba(read_taps(fs, taps, b, join=join, flatten=flat)) for b in blocks]
            or [np.zeros((0, len(classes)))]
        )  # (N, K)
        return Predictions.of(fs, proba, classes)


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
        The rows to train on (e.g. ``split_rows(fs)["train"]``); None is every labelled row.
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
    >>> from embedkit.rows import from_arrays
    >>> from embedkit.heads import make_head
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, X, y).close()
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
    own = isinstance(store, (str, os.PathLike))
    with FeatureStore(store) if own else contextlib.nullcontext(store) as fs:
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
    return head
