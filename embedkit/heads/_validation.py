"""Checks every head shares: fitted state, and labels encoded as class indices.

Every head ends its learned state in ``_`` and raises
:class:`embedkit.errors.NotFittedError` before ``fit``.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from embedkit.errors import NotFittedError, UserInputError


def check_fitted(head: object, attribute: str = "classes_") -> None:
    """Raise :class:`NotFittedError` naming the head when ``attribute`` is not set yet."""
    if not hasattr(head, attribute):
        name = type(head).__name__
        raise NotFittedError(f"{name} is not fitted yet; call {name}.fit(X, y) before using it")


def check_partial_fit(head, X, classes, shape: tuple | None) -> bool:
    """Check a ``partial_fit`` block; return True on the first call (``shape`` is None).

    The first call needs ``classes`` (all labels); later blocks need the per-item
    ``shape`` that the head was fitted on.
    """
    if shape is None and classes is None:
        raise UserInputError(
            "classes must be passed on the first call to partial_fit, "
            "e.g. partial_fit(X, y, classes=np.unique(y_all))"
        )
    if shape is not None:
        check_shape(head, X, shape)
    return shape is None


def check_shape(head, X, shape: tuple) -> None:
    """Raise when the per-item shape of ``X`` is not ``shape``, the one ``head`` was fitted on."""
    got = np.shape(X)
    if len(got) < 2 or tuple(got[1:]) != tuple(shape):
        n = int(np.prod(got[1:])) if len(got) >= 2 else got
        raise UserInputError(
            f"X has {n} features, but {type(head).__name__} is expecting "
            f"{int(np.prod(shape))} features as input (per-item shape {tuple(shape)}); "
            "pass features from the same tap"
        )


def encode_labels(
    y: np.ndarray, classes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, y_index)`` for classification targets ``y``.

    Raises :class:`UserInputError` when ``y`` holds fewer than two classes or labels
    outside ``classes``.
    """
    check_classification_targets(y)
    classes = np.unique(y) if classes is None else classes
    if len(classes) < 2:
        raise UserInputError(
            f"y has {len(classes)} class ({classes!r}); a classifier needs at least 2 classes"
        )
    index = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[index] != y
    if np.any(unknown):
        raise UserInputError(
            f"y holds labels not in classes: {np.unique(np.asarray(y)[unknown])[:5]!r}; "
            f"pass all classes ({len(classes)} known) on the first partial_fit call"
        )
    return np.asarray(classes), index.astype(np.int64)


def check_finite_parts(fs, tap: str, data: dict, parts: dict) -> None:
    """Refuse NaN or infinite stored features before any head sees them (one line)."""
    for name, (X, _) in data.items():
        bad = ~np.isfinite(X).all(axis=tuple(range(1, X.ndim)))  # (n,)
        if bad.any():
            row = int(parts[name][np.flatnonzero(bad)[0]])
            item = str(fs.ids()[row])
            raise UserInputError(
                f"{fs.path}: row {row} (id {item!r}, tap {tap!r}) holds NaN or "
                f"infinite features; run `embedkit store verify {fs.path}` and re-extract it, "
                "or leave it out with --exclude"
            )
