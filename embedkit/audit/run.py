"""Run the whole audit: label issues, class balance, near-duplicates and outliers.

    embedkit audit feats.h5 --folds 5 --head logreg --dup-threshold 0.98 --out audit/

Python::

    from embedkit.audit import audit
    report = audit("feats.h5")
    report.write("audit/")
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.audit.balance import class_balance
from embedkit.audit.label_issues import find_label_issues, out_of_fold_proba
from embedkit.audit.neighbors import neighbor_scan
from embedkit.audit.report import AuditReport
from embedkit.errors import UserInputError, check_known
from embedkit.progress import Progress

_NO_LABELS_HINT = (
    "the audit needs labels: re-extract from a folder with one subfolder per class, "
    "a CSV/JSONL with --label-column, or a .npy with --labels labels.npy "
    "(Python: from_arrays(path, X, y=labels))"
)


@dataclass(frozen=True)
class AuditSpec:
    """How to audit; every field has the CLI flag of the same name."""

    folds: int = 5  # k of the stratified k-fold that gives out-of-fold probabilities
    head: str = "logreg"  # cheap head for that pass: an embedkit.heads name, or logreg / sgd
    dup_threshold: float = 0.98  # cosine similarity at or above which two items are duplicates
    k: int = 10  # neighbours whose mean cosine distance is the outlier score
    top_k: int | None = None  # rows of suspects/outliers.csv; None: all issues, top 1% outliers
    rank_by: str = "self_confidence"  # suspect order: self_confidence or margin (lowest first)
    block_size: int = 4096  # rows per similarity tile: about 4 * block_size**2 bytes of memory
    max_pairs: int = 100_000  # keep at most this many duplicate pairs, the most similar
    seed: int = 0  # seeds the folds and the head

    def __post_init__(self):
        if self.rank_by not in ("self_confidence", "margin"):
            raise UserInputError(f"rank_by={self.rank_by!r}: use self_confidence or margin")
        if self.top_k is not None and self.top_k < 0:
            raise UserInputError(f"--top-k {self.top_k}: use a count >= 0")
        for name in ("folds", "k", "block_size"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name}={getattr(self, name)}: use a value >= 1")


def _spec(spec: AuditSpec | None, overrides: dict[str, Any]) -> AuditSpec:
    check_known(overrides, [f.name for f in fields(AuditSpec)], "audit option")
    return replace(spec or AuditSpec(), **overrides)


def audit(
    store,
    *,
    tap: str | None = None,
    spec: AuditSpec | None = None,
    progress: bool = False,
    **overrides,
) -> AuditReport:
    """Audit a feature store: label issues, class balance, near-duplicates, outliers.

    Parameters
    ----------
    store : str, Path or FeatureStore
        The HDF5 feature store; it must hold labels.
    tap : str, optional
        Which features to use (default: the store's default tap).
    spec : AuditSpec, optional
        Settings; keyword ``overrides`` (``folds=3``, ``head="sgd"``, ...) replace its fields.
    progress : bool
        Show n of N steps (folds, similarity tiles) with an ETA on stderr.

    Returns
    -------
    AuditReport
        Call ``report.write(out_dir)`` for report.md/json, the CSVs and confusion.png.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import make_blobs
    >>> from embedkit.store import FeatureStore
    >>> from embedkit.rows import from_arrays
    >>> X, y = make_blobs(120, centers=3, n_features=8, random_state=0)
    >>> path = tempfile.mkdtemp() + "/feats.h5"
    >>> from_arrays(path, X.astype("float32"), y).close()
    >>> report = audit(path, folds=3, dup_threshold=0.98)
    >>> report.write(tempfile.mkdtemp()).name
    'report.md'
    """
    spec = _spec(spec, overrides)
    from embedkit.store import FeatureStore

    own = isinstance(store, (str, Path))
    with FeatureStore(store) if own else contextlib.nullcontext(store) as fs:
        path, tap = str(store if own else fs.path), fs.default_tap if tap is None else tap
        if tap not in fs.taps:
            raise UserInputError(f"store {path!r} has no tap {tap!r}; taps: {', '.join(fs.taps)}")
        if not fs.has_labels:
            raise UserInputError(f"store {path!r} has no labels; {_NO_LABELS_HINT}")
        return audit_arrays(
            fs.features(tap=tap),
            fs.labels(),
            ids=fs.ids(),
            splits=fs.splits(),
            label_names=list(fs.label_names),
            spec=spec,
            source={"store": path, "tap": tap},
            progress=progress,
        )


def audit_arrays(
    features: np.ndarray,
    labels,
    *,
    ids=None,
    splits=None,
    label_names: list[str] | None = None,
    spec: AuditSpec | None = None,
    source: dict | None = None,
    progress: bool = False,
    **overrides,
) -> AuditReport:
    """Audit features held in memory (the same as :func:`audit` without a store).

    Parameters
    ----------
    features : ndarray (N, ...)
        One feature vector per item.
    labels : ndarray of int (N,) or list of str
        Given labels; ``-1`` (or ``""``) marks unlabelled items, which only take part
        in the duplicate and outlier passes.
    ids, splits : sequences of str, optional
        Item ids (default: the row numbers) and split names ("train", "val", "test", "").
    label_names : list of str, optional
        Class names for integer labels (default: "0", "1", ...).

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, y = make_blobs(200, centers=3, n_features=8, random_state=0)
    >>> y[:5] = (y[:5] + 1) % 3          # five wrong labels
    >>> report = audit_arrays(X, y, folds=3)
    >>> sorted(report.suspect_rows(5).tolist())  # the five lowest self-confidences
    [0, 1, 2, 3, 4]
    """
    spec = _spec(spec, overrides)
    started = time.perf_counter()
    n = len(features)
    labels, label_names = _encode_labels(labels, label_names, n)
    ids = np.array([str(i) for i in (range(n) if ids is None else ids)])
    splits = np.full(n, "", dtype=object) if splits is None else np.asarray(splits, dtype=object)
    if len(ids) != n or len(splits) != n:
        raise UserInputError(f"ids ({len(ids)}) and splits ({len(splits)}) must have {n} rows")
    labelled = np.flatnonzero(labels >= 0)
    if not len(labelled):
        raise UserInputError(f"no item has a label; {_NO_LABELS_HINT}")
    x = np.asarray(features).reshape(n, -1)  # (N, D)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = ids[~finite]
        raise UserInputError(
            f"{len(bad)} items have NaN or infinite features (first: {', '.join(bad[:3])}); "
            "re-extract them or leave them out of the store"
        )
    blocks = -(-n // spec.block_size)
    tiles = blocks * (blocks + 1) // 2
    # work: a fold fits on (folds-1)/folds of the labelled rows; a tile compares two blocks
    fold_work = len(labelled) * (spec.folds - 1) / spec.folds * x.shape[1] * 10
    tile_work = float(min(n, spec.block_size)) ** 2 * x.shape[1] / 2
    with Progress("audit", spec.folds + tiles, unit="steps", enabled=progress,
                  work_total=spec.folds * fold_work + tiles * tile_work) as bar:  # fmt: skip
        proba = out_of_fold_proba(
            x[labelled],
            labels[labelled],
            n_classes=len(label_names),
            head=spec.head,
            folds=spec.folds,
            seed=spec.seed,
            on_fold=lambda: bar.update(1, work=fold_work),
        )  # (L, K)
        issues = find_label_issues(labels[labelled], proba)
        balance = class_balance(labels[labelled], issues.suggested, len(label_names))
        t_oof = time.perf_counter()
        scan = neighbor_scan(
            x,
            threshold=spec.dup_threshold,
            k=spec.k,
            block_size=spec.block_size,
            max_pairs=spec.max_pairs,
            on_tile=lambda: bar.update(1, work=tile_work),
        )
    end = time.perf_counter()
    timings = {
        "out_of_fold_s": t_oof - started,
        "neighbors_s": end - t_oof,
        "total_s": end - started,
    }
    return AuditReport(
        spec=spec,
        source=dict(source or {}),
        ids=ids,
        labels=labels,
        label_names=list(label_names),
        splits=splits.astype(str),
        labelled=labelled,
        proba=proba,
        issues=issues,
        balance=balance,
        scan=scan,
        timings=timings,
    )


def _encode_labels(labels, label_names, n: int) -> tuple[np.ndarray, list[str]]:
    """Return int64 labels (-1 unlabelled) and the class names."""
    raw = np.asarray(labels)
    if len(raw) != n:
        raise UserInputError(f"labels have {len(raw)} rows but features have {n}")
    if raw.dtype.kind in "USO":
        given = {str(v) for v in raw if str(v)}
        names = sorted(given) if label_names is None else list(label_names)
        lookup = {name: i for i, name in enumerate(names)}
        unknown = sorted(given - set(lookup))
        if unknown:
            raise UserInputError(f"labels {unknown[:5]} are not in label_names {names}")
        return np.array([lookup.get(str(v), -1) for v in raw], dtype=np.int64), names
    codes = raw.astype(np.int64)
    top = int(codes.max()) + 1 if len(codes) else 0
    names = [str(i) for i in range(top)] if label_names is None else [str(v) for v in label_names]
    if top > len(names):
        raise UserInputError(f"label {top - 1} has no name; label_names has {len(names)} entries")
    return codes, names
