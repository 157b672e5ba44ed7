"""What ``embedkit info`` shows about a store, as library code.

>>> store_summary("feats.h5")["items"]  # doctest: +SKIP
60000
"""

from __future__ import annotations

import numpy as np

from embedkit.store.read.reader import FeatureStore

_RECORDED = ("schema_version", "embedkit_version", "created", "updated", "backbone_sha256")


def store_summary(path) -> dict:
    """Everything ``embedkit info`` prints, as a dict (sizes, counts, taps, provenance)."""
    with FeatureStore(path) as fs:
        prov = fs.provenance
        splits = fs.splits()
        out = {
            "path": str(fs.path),
            "size_bytes": fs.nbytes,
            "shards": fs.n_shards,
            "items": len(fs),
            **{k: prov.get(k) for k in _RECORDED},  # None where the store does not say
            "provider": prov.get("provider", ""),
            "model": prov.get("model", ""),
            "dtype": prov.get("dtype"),
            "preprocess": prov.get("preprocess"),
            "taps": [t.to_dict() for t in fs.fingerprint.tap_infos],
            "labels": {},
            "splits": {s: int((splits == s).sum()) for s in ("train", "val", "test", "")},
            "bad_items": len(fs.bad_items()),
            "runs": len(prov.get("runs", [])),
        }
        if fs.has_labels:
            y = fs.labels()
            counts = np.bincount(y[y >= 0], minlength=len(fs.label_names))
            out["labels"] = {n: int(c) for n, c in zip(fs.label_names, counts)}
            out["unlabelled"] = int((y < 0).sum())
    return out
