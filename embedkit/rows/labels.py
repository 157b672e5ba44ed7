"""Label values: what a store accepts as a class name, shared by extract and ``from_arrays``.

Labels are string or integer scalars; a missing one (empty, None, NaN) means unlabelled;
anything else is refused naming the row. Integer labels name classes by their distinct
values, and more than :data:`MAX_CLASSES` of them are refused before anything is built.

    embedkit extract model.onnx X.npy --labels y.npy --out feats.h5
"""

from __future__ import annotations

import math

import numpy as np

from embedkit.errors import UserInputError, short

MAX_CLASSES = 100_000  # more distinct labels than this is a regression target, not classes
_RULE = "{}s must be strings or integers (empty, null or NaN = missing)"


def label_value(value: object, where: str, field: str = "label") -> str | None:
    """The class name of one label, ``None`` when it is missing; refuse other values.

    ``field`` names what is read in messages (ids and splits follow the same rules).

    Examples
    --------
    >>> label_value(3.0, "row 0"), label_value("cat", "row 1"), label_value(float("nan"), "row 2")
    ('3', 'cat', None)
    >>> label_value([1, 2], "t.jsonl:4")
    Traceback (most recent call last):
    ...
    embedkit.errors.UserInputError: t.jsonl:4: label [1, 2] is a list; labels must be ...
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise UserInputError(
                f"{where}: {field} {value!r} is not UTF-8; {_RULE.format(field)}"
            ) from None
    if value is None or value == "":
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if not value.is_integer():
            raise UserInputError(
                f"{where}: {field} {value!r} is not a whole number; {_RULE.format(field)}"
            )
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        kind = {bool: "a boolean", list: "a list", dict: "an object"}.get(type(value))
        raise UserInputError(
            f"{where}: {field} {short(value)} is {kind or type(value).__name__}; "
            + _RULE.format(field)
        )
    if "\x00" in str(value):  # HDF5 strings end at NUL
        raise UserInputError(
            f"{where}: {field} {short(value)} holds a NUL character, which a store cannot "
            "hold; fix the file"
        )
    return check_text(str(value), where, field)


def check_text(value: str, where: str, field: str) -> str:
    """Return ``value``, refusing a string that cannot be stored as UTF-8 (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserInputError(
            f"{where}: {field} {short(value)} holds an unpaired surrogate (a broken \\u escape); "
            "fix the text"
        ) from None
    return value


def array_labels(values: np.ndarray, where: str) -> tuple[list[str | None], tuple[str, ...]]:
    """Label names for a ``labels.npy`` array and their index order (numeric when integer).

    Integer labels below 0 mean unlabelled; the class names are the distinct values, so a
    label of 2e9 makes one class, not 2e9.

    Examples
    --------
    >>> array_labels(np.array([2, -1, 2_000_000_000]), "y.npy")
    (['2', None, '2000000000'], ('2', '2000000000'))
    """
    kind = values.dtype.kind
    if kind == "f":
        known = values[~np.isnan(values)]
        fractional = np.flatnonzero(~np.isnan(values) & (values != np.floor(values)))
        if len(fractional):
            i = int(fractional[0])
            raise UserInputError(
                f"{where}: row {i}: label {values[i].item()!r} is not a whole number; "
                f"{_RULE.format('label')}"
            )
        kind, values = "i", np.where(np.isnan(values), -1, values)
        if len(known) and np.abs(known).max() >= 2**62:
            raise UserInputError(f"{where}: labels beyond 2**62; {_RULE.format('label')}")
        values = values.astype(np.int64)
    if kind in "iu":
        distinct = np.unique(values[values >= 0])
        check_classes(len(distinct), where)
        names = [None if v < 0 else str(v) for v in values.tolist()]
        return names, tuple(str(v) for v in distinct.tolist())
    if kind in "USO":  # text, or Python objects (in memory: from_arrays)
        names = [label_value(v, f"{where}: row {i}") for i, v in enumerate(values.tolist())]
        check_classes(len(set(names) - {None}), where)
        return names, ()
    raise UserInputError(
        f"{where}: labels of dtype {values.dtype} are not supported; {_RULE.format('label')} "
        "(e.g. y.astype(np.int64))"
    )


def check_classes(n: int, where: str) -> None:
    """Refuse more than :data:`MAX_CLASSES` distinct labels before anything is built from them."""
    if n > MAX_CLASSES:
        raise UserInputError(
            f"{where}: {n:,} distinct labels, more than {MAX_CLASSES:,} classes; labels name "
            "classes (not continuous values): pass class ids or names"
        )


def array_label_names(y, label_names, n) -> tuple[list[str | None], list[str]]:
    """Per-row class names and the declared class order (distinct values, never a range)."""
    if y is None:
        return [None] * n, list(label_names or [])
    y = np.asarray(y)
    if len(y) != n:
        raise UserInputError(f"y has {len(y)} labels for {n} rows")
    if label_names is not None and y.dtype.kind in "iu":
        outside = np.flatnonzero(y >= len(label_names))
        if len(outside):
            i = int(outside[0])
            raise UserInputError(
                f"y: row {i}: label {int(y[i])} has no name ({len(label_names)} label_names)"
            )
        return [None if v < 0 else str(label_names[v]) for v in y.tolist()], list(label_names)
    names, order = array_labels(y, "y")
    distinct = sorted({v for v in names if v is not None})
    declared = list(label_names) if label_names is not None else list(order) or distinct
    return names, declared
