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

import importlib

# Imported on first use (PEP 562): `embedkit.heads.registry`, which the CLI reads to build
# its parser, must not pull in sklearn (about 1.5 s) for commands that train nothing.
_EXPORTS = {
    **dict.fromkeys(("load_head", "save_head"), "embedkit.heads._persist"),
    **dict.fromkeys(("fit_store", "predict_store", "train_on_store"), "embedkit.heads.from_store"),
    **dict.fromkeys(("HEADS", "TORCH_HEADS", "head_class", "head_record", "make_head"),
                    "embedkit.heads.registry"),
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'embedkit.heads' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
