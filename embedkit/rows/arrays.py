"""Bring your own features: a new store from in-memory arrays.

fs = from_arrays("feats.h5", X, y=["cat", "dog", ...], splits=["train", "test", ...])
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError
from embedkit.rows.labels import array_label_names
from embedkit.store import BatchShards, FeatureStore, Fingerprint, StoreWriter, TapInfo


def from_arrays(
    path, X, y=None, *, ids=None, label_names=None, splits=None, tap: str = "features"
) -> FeatureStore:
    """Write in-memory features into a new store and return it opened.

    Parameters
    ----------
    path : str or Path
        The new store; an existing path is refused.
    X : ndarray or dict of str to ndarray
        ``(N, ...)`` features, or one such array per tap name.
    y : array-like, optional
        Integer labels (named by ``label_names``) or class names; missing values
        (``None``, ``""``, NaN, negative integers) leave a row unlabelled.
    ids : sequence, optional
        Item ids (default ``"0"`` ... ``"N-1"``).
    label_names : sequence of str, optional
        Class names in index order.
    splits : sequence of str, optional
        ``"train"``/``"val"``/``"test"``/``""`` per row.
    tap : str
        The tap name of a single array ``X``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> X = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> with from_arrays(path, X, y=["a", "b", "a", "b", "a", "b"]) as fs:
    ...     print(len(fs), fs.taps, fs.label_names, fs.features(rows=[5, 0]).tolist())
    6 ['features'] ['a', 'b'] [[10.0, 11.0], [0.0, 1.0]]
    """
    path = Path(path)
    if path.exists():
        raise UserInputError(f"{path}: already exists; choose a new path or delete it first")
    arrays = X if isinstance(X, dict) else {tap: X}
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    first = next(iter(arrays.values()))
    n = len(first)
    dtype = "float16" if all(a.dtype == np.float16 for a in arrays.values()) else "float32"
    taps = [TapInfo(k, v.shape[1:], dtype=dtype) for k, v in arrays.items()]
    fp = Fingerprint.create("arrays", taps, {"kind": "features"}, dtype)
    ids = [str(i) for i in (range(n) if ids is None else ids)]
    names, declared = array_label_names(y, label_names, n)
    digests = [hashlib.sha256(first[i].tobytes()).hexdigest() for i in range(n)]
    split_values = None if splits is None else [str(s) or None for s in splits]
    with StoreWriter(path, fp, provenance={"source": "arrays"}, label_names=declared) as writer:
        writer.plan(ids, digests)
        writer.begin(BatchShards(ids, max(1, n)))
        writer.write_batch(0, ids, digests, names, split_values, arrays)
        writer.commit()
    return FeatureStore(path)
