"""Checks on the features that enter a store: a batch's rows are checked before they are
journaled, so a row holding NaN or infinity is never committed. (Label checks live in
``embedkit.rows.labels``, shared with ``embedkit.rows.from_arrays``.)

    embedkit extract model.onnx X.npy --labels y.npy --out feats.h5
"""

from __future__ import annotations

import numpy as np


def nonfinite_rows(features: dict[str, np.ndarray], dtype: str) -> dict[int, str]:
    """Rows of a batch (positions) whose features hold NaN or infinity, with the reason.

    ``features`` are the ``{tap: (n, ...)}`` arrays as they will be stored (``dtype``).

    Examples
    --------
    >>> x = np.array([[0.0, 1.0], [np.nan, 2.0]], np.float32)
    >>> nonfinite_rows({"pool": x}, "float32")
    {1: "the model's output for tap 'pool' holds NaN or infinite values"}
    """
    bad: dict[int, str] = {}
    for tap, x in features.items():
        flat = x.reshape(len(x), -1)  # (n, features)
        for row in np.flatnonzero(~np.isfinite(flat).all(axis=1)).tolist():
            reason = f"the model's output for tap {tap!r} holds NaN or infinite values"
            if dtype == "float16":
                reason += " (float16 storage overflows beyond 65504: try --dtype float32)"
            bad.setdefault(row, reason)
    return dict(sorted(bad.items()))
