"""Labels and splits of cached rows follow the source: a re-run updates them, features stay.

Rows are cached on their content (the digest), so re-extracting a CSV with the same texts
but corrected labels computes nothing; the labels (and splits) the source gives are still
written to the cached rows at commit, without recomputing or copying any feature.

    embedkit extract model.onnx fixed_labels.csv --out feats.h5   # "relabelled 12 rows"
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def label_updates(
    stored: dict[str, tuple[str | None, str]],
    ids: Sequence[str],
    cached: np.ndarray,
    labels: Sequence[str | None] | None,
    splits: Sequence[str | None] | None,
) -> dict[str, tuple[str | None, str]]:
    """``{id: (label, split)}`` for the ``cached`` positions whose source values changed.

    ``stored`` maps an id to its stored (label name or None, split). A source that gives
    labels (at least one) sets every cached row's label, an empty one meaning unlabelled;
    a source without labels leaves them. A split is changed only where the source gives one.

    Examples
    --------
    >>> stored = {"a": ("cat", ""), "b": ("dog", "test")}
    >>> label_updates(stored, ["a", "b"], np.array([0, 1]), ["dog", "dog"], None)
    {'a': ('dog', '')}
    """
    with_labels = labels is not None and any(v is not None for v in labels)
    updates = {}
    for i in cached.tolist():
        item_id = ids[i]
        old_label, old_split = stored[item_id]
        label = labels[i] if with_labels else old_label
        split = (splits[i] if splits is not None else None) or old_split
        if (label, split) != (old_label, old_split):
            updates[item_id] = (label, split)
    return updates
