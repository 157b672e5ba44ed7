"""The one list of heads: name, class, and what the CLI and the bench need to know of each.

Every place that names heads derives from :data:`RECORDS`: ``make_head`` and the CLI's
``--head`` choices, the classes ``load_head`` accepts, the bench's default ``--heads``,
its ``--sweep`` grids, its run costs and the row order of its report.

    embedkit train feats.h5 --head logreg --out head/

Examples
--------
>>> head_record("mlp").torch, head_record("mlp").streams, HEADS[:3]
(True, True, ('sgd', 'logreg', 'logregcv'))
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from embedkit.errors import UserInputError, check_known, require

_SKLEARN, _TORCH = "embedkit.heads._sklearn", "embedkit.heads._torch_heads"
_SEMI = "embedkit.heads._semi"
_C_GRID = {"C": [0.01, 0.1, 1.0, 10.0, 100.0]}
_TORCH_GRID = {"weight_decay": [0.0, 1e-4, 1e-2], "lr": [1e-3, 1e-2]}


@dataclass(frozen=True)
class HeadRecord:
    """One head: how to build it, and how the bench treats it."""

    name: str  # the name of make_head, --head and --heads
    cls: str  # its class name, also the "class" of a saved head.json
    module: str = _SKLEARN  # imported on first use: torch heads load torch only when asked
    torch: bool = False  # needs torch; saved as safetensors + JSON (else skops)
    streams: bool = False  # has partial_fit, so fit_store can stream a store into it
    bench_default: bool = False  # in `embedkit bench`'s default --heads
    cost: int = 1  # relative fit cost: the bench starts the expensive runs first
    deterministic: bool = False  # its fit ignores random_state: same rows, same head
    sweep: dict = field(default_factory=dict)  # the grid `embedkit bench --sweep` tries
    graph: str | None = None  # its ONNX graph in embedkit deploy: "linear" (Gemm + Softmax),
    #   "centroid", "knn" or "torch" (torch.onnx); None: it does not deploy;
    #   "final": the graph of the supervised head it fitted last (``head_``)
    semi: bool = False  # learns from unlabelled rows too: train and bench pass them as -1


# In report order: linear models, torch heads, the non-parametric ones, semi-supervised.
RECORDS = (
    HeadRecord("sgd", "SGDHead", streams=True, bench_default=True,
               sweep={"alpha": [1e-5, 1e-4, 1e-3, 1e-2]}, graph="linear"),
    HeadRecord("logreg", "LogRegHead", bench_default=True, cost=2, deterministic=True,
               sweep=_C_GRID, graph="linear"),
    HeadRecord("logregcv", "LogRegCVHead", cost=3, deterministic=True, graph="linear"),
    HeadRecord("ridge", "RidgeHead", deterministic=True,
               sweep={"alpha": [0.1, 1.0, 10.0, 100.0, 1000.0]}, graph="linear"),
    HeadRecord("svm", "SVMHead", cost=2, sweep=_C_GRID, graph="linear"),
    HeadRecord("linear", "LinearHead", _TORCH, torch=True, streams=True, bench_default=True,
               cost=2, sweep=_TORCH_GRID, graph="torch"),
    HeadRecord("mlp", "MLPHead", _TORCH, torch=True, streams=True, bench_default=True,
               cost=3, sweep=_TORCH_GRID, graph="torch"),
    HeadRecord("attnpool", "AttnPoolHead", _TORCH, torch=True, streams=True, cost=3,
               sweep=_TORCH_GRID, graph="torch"),
    HeadRecord("knn", "KNNHead", bench_default=True, deterministic=True,
               sweep={"n_neighbors": [1, 3, 5, 10, 20]}, graph="knn"),
    HeadRecord("centroid", "CentroidHead", bench_default=True, deterministic=True,
               graph="centroid"),
    HeadRecord("spread", "LabelSpreadingHead", _SEMI, cost=3, semi=True, graph="final",
               sweep={"n_neighbors": [5, 10, 20], "alpha": [0.9, 0.99]}),
    HeadRecord("selftrain", "SelfTrainingHead", _SEMI, cost=3, semi=True, graph="final",
               sweep={"threshold": [0.7, 0.9, 0.97]}),
)  # fmt: skip
HEADS = tuple(r.name for r in RECORDS)
TORCH_HEADS = tuple(r.name for r in RECORDS if r.torch)
STREAMING_HEADS = tuple(r.name for r in RECORDS if r.streams)
BENCH_DEFAULT_HEADS = tuple(r.name for r in RECORDS if r.bench_default)
# `embedkit bench --taps ...` without --heads: the heads that win tap sweeps (issue 21:
# svm and ridge were the best single-tap heads on held-out text), cheap ones included
TAP_SWEEP_HEADS = ("sgd", "logreg", "ridge", "svm", "mlp", "knn")
SEMI_HEADS = tuple(r.name for r in RECORDS if r.semi)


def head_record(name: str, where: str = "") -> HeadRecord:
    """The record of head ``name``; an unknown name raises, listing the known ones.

    Examples
    --------
    >>> head_record("knn").sweep
    {'n_neighbors': [1, 3, 5, 10, 20]}
    """
    for record in RECORDS:
        if record.name == name:
            return record
    raise UserInputError(f"unknown head {name!r}{where}; known: {', '.join(HEADS)}")


def record_of(head) -> HeadRecord | None:
    """The record of a head object's class (``type(head).__name__``), None if unregistered.

    Examples
    --------
    >>> record_of(make_head("ridge")).name, record_of("not a head")
    ('ridge', None)
    """
    cls = type(head)
    return next((r for r in RECORDS if r.cls == cls.__name__ and r.module == cls.__module__), None)


def head_class(name: str) -> type:
    """Return the estimator class registered as ``name`` (one of :data:`HEADS`).

    Examples
    --------
    >>> head_class("ridge").__name__
    'RidgeHead'
    """
    record = head_record(name)
    if record.torch:
        require("torch", "torch", f"the {name!r} head")
    return getattr(importlib.import_module(record.module), record.cls)


def make_head(name: str, **params):
    """Return an unfitted head by name, with ``params`` set.

    Parameters
    ----------
    name : str
        One of :data:`HEADS`: sgd, logreg, logregcv, ridge, svm, linear, mlp, attnpool, knn,
        centroid, and the semi-supervised spread and selftrain.
    **params
        Constructor parameters of that head; every head accepts ``random_state``.

    Examples
    --------
    >>> make_head("logreg", C=0.5).get_params()["C"]
    0.5
    """
    cls = head_class(name)
    check_known(params, cls().get_params(), "parameter", f" for head {name!r}")
    return cls(**params)
