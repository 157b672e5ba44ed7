"""Heads: scikit-learn compatible classifiers trained on cached features.

``make_head(name, **params)`` returns an unfitted estimator; every head has ``fit``,
``predict``, ``predict_proba``, ``score`` and ``get_params``/``set_params``. The
scikit-learn heads import without torch; the torch heads load on first use. The heads
are listed once, in :mod:`embedkit.heads.registry`; training on and predicting from a
store is :mod:`embedkit.heads.from_store`.

    embedkit train feats.h5 --head logreg --out head/
    embedkit predict head/ feats.h5 --out preds.csv

Examples
--------
>>> from embedkit.heads import HEADS, make_head
>>> make_head("sgd", loss="hinge", random_state=0)
SGDHead(loss='hinge', random_state=0)
>>> "mlp" in HEADS
True
"""

from __future__ import annotations

from embedkit.heads._persist import load_head, save_head
from embedkit.heads.from_store import fit_store, predict_store, train_on_store
from embedkit.heads.registry import HEADS, TORCH_HEADS, head_class, head_record, make_head

__all__ = [
    "HEADS",
    "TORCH_HEADS",
    "fit_store",
    "head_class",
    "head_record",
    "load_head",
    "make_head",
    "predict_store",
    "save_head",
    "train_on_store",
]
