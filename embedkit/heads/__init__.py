"""Heads: scikit-learn compatible classifiers trained on cached features.

``make_head(name, **params)`` returns an unfitted estimator; every head has ``fit``,
``predict``, ``predict_proba``, ``score`` and ``get_params``/``set_params``. The
scikit-learn heads import without torch; the torch heads load on first use.

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

from embedkit.errors import UserInputError
from embedkit.heads._persist import load_head, save_head
from embedkit.heads._stream import fit_store

# name -> (module, class). Torch heads are imported only when asked for.
_REGISTRY = {
    "sgd": ("embedkit.heads._sklearn", "SGDHead"),
    "logreg": ("embedkit.heads._sklearn", "LogRegHead"),
    "ridge": ("embedkit.heads._sklearn", "RidgeHead"),
    "svm": ("embedkit.heads._sklearn", "SVMHead"),
    "knn": ("embedkit.heads._sklearn", "KNNHead"),
    "centroid": ("embedkit.heads._sklearn", "CentroidHead"),
    "linear": ("embedkit.heads._torch_heads", "LinearHead"),
    "mlp": ("embedkit.heads._torch_heads", "MLPHead"),
    "attnpool": ("embedkit.heads._torch_heads", "AttnPoolHead"),
}
HEADS = tuple(_REGISTRY)
TORCH_HEADS = ("linear", "mlp", "attnpool")


def head_class(name: str) -> type:
    """Return the estimator class registered as ``name`` (one of :data:`HEADS`).

    Examples
    --------
    >>> head_class("ridge").__name__
    'RidgeHead'
    """
    if name not in _REGISTRY:
        raise UserInputError(f"unknown head {name!r}; known: {', '.join(HEADS)}")
    module, cls = _REGISTRY[name]
    if name in TORCH_HEADS:
        from embedkit.errors import require

        require("torch", "torch", f"the {name!r} head")
    return getattr(importlib.import_module(module), cls)


def make_head(name: str, **params):
    """Return an unfitted head by name, with ``params`` set.

    Parameters
    ----------
    name : str
        One of :data:`HEADS`: sgd, logreg, ridge, svm, knn, centroid, linear, mlp, attnpool.
    **params
        Constructor parameters of that head; every head accepts ``random_state``.

    Examples
    --------
    >>> make_head("logreg", C=0.5).get_params()["C"]
    0.5
    """
    cls = head_class(name)
    valid = cls().get_params()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UserInputError(
            f"unknown parameter(s) {', '.join(unknown)} for head {name!r}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    return cls(**params)


__all__ = ["HEADS", "TORCH_HEADS", "fit_store", "head_class", "load_head", "make_head", "save_head"]
