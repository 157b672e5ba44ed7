"""What a bench worker does: fit and score one run, or a group of runs that share one fit.

    embedkit bench stores/fmnist-lite0.h5 --taps all --seeds 5 --out bench/

A run is one :class:`Task`. At ``--shots all`` every seed of a deterministic head
(``HeadRecord.deterministic``: logreg, ridge, knn, centroid) fits the same rows the same
way: :func:`share_fits` makes that one fit, whose test scores every seed's record copies
(``fit_shared_with`` names the run that fitted); each seed still fits and scores its own
validation split. Heads with randomness (sgd, the torch heads, svm) fit once per seed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from joblib import cpu_count
from threadpoolctl import threadpool_limits

from embedkit.bench.metrics import score
from embedkit.bench.records import SCHEMA, config_hash
from embedkit.bench.sweep import sweep
from embedkit.heads.registry import head_record, make_head

_SHARED = ("metrics", "params", "sweep", "fit_s", "predict_s")  # copied from the fitting run


@dataclass(frozen=True)
class Task:
    """One run of the bench, and the runs that reuse its full fit (``shares``)."""

    run_id: str
    tap: str  # the tap set's name: the key of its feature matrix
    head: str
    shots: int | str
    seed: int
    fold: int | None
    train: np.ndarray  # row indices the head fits on
    evaluate: np.ndarray  # row indices it is scored on
    val: tuple | None  # (fit rows, validation rows) carved from ``train``, top level only
    baselines: dict  # accuracy of the majority-class and stratified-random predictors
    shares: tuple = ()  # Tasks of other seeds with the same fit: see share_fits


def share_fits(tasks: list[Task], *, sweep: bool = False) -> list[Task]:
    """Fold the runs of a deterministic head that fit the same rows into one task each.

    Runs share a fit when they have the same tap set, head, training rows and evaluation
    rows (at ``--shots all`` of the k-shot protocol: every seed). With ``sweep`` nothing is
    shared: each seed tunes on its own validation split. The order of first appearance is
    kept (the plan puts expensive runs first).

    Examples
    --------
    >>> rows, test = np.arange(8), np.arange(8, 10)
    >>> tasks = [Task(f"r{s}", "pool", head, "all", s, None, rows, test, None, {})
    ...          for head in ("knn", "sgd") for s in range(3)]
    >>> [(t.run_id, len(t.shares)) for t in share_fits(tasks)]
    [('r0', 2), ('r0', 0), ('r1', 0), ('r2', 0)]
    """
    groups: dict = {}
    for i, task in enumerate(tasks):
        shared = not sweep and head_record(task.head).deterministic  # else a group of its own
        key = (
            (task.tap, task.head, _rows_key(task.train), _rows_key(task.evaluate)) if shared else i
        )
        groups.setdefault(key, []).append(task)
    return [dataclasses.replace(g[0], shares=tuple(g[1:])) for g in groups.values()]


def _rows_key(rows: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()


def run_task(task: Task, X: np.ndarray, y: np.ndarray, common: dict) -> list[dict]:
    """The records of ``task`` and of the runs that share its fit (``task.shares``)."""
    first = run_one(task, X, y, common)
    return [first] + [run_one(other, X, y, common, reuse=first) for other in task.shares]


def run_one(task: Task, X: np.ndarray, y: np.ndarray, common: dict,
            reuse: dict | None = None) -> dict:  # fmt: skip
    """Fit and score one run; a head that raises gives a ``failed`` record, not an error.

    ``reuse``: the record of a run with the same full fit (see :func:`share_fits`); its
    test scores are copied when it is ``ok``, and only the validation fit runs here.
    """
    record = {
        "schema": SCHEMA,
        **{key: getattr(task, key) for key in ("run_id", "tap", "head", "shots", "seed", "fold")},
        "protocol": common["config"]["protocol"],
        "n_train": int(len(task.train)),
        "n_eval": int(len(task.evaluate)),
        "config": common["config"],
        "config_hash": config_hash(common["config"]),
        "host": {
            "cores": cpu_count(),
            "threads": common["threads"],
            "python": platform.python_version(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "status": "ok",
        "metrics": {},
        "baselines": task.baselines,
        "params": {},
        "warnings": [],
        **dict.fromkeys(("error", "val", "sweep", "fit_s", "predict_s", "fit_shared_with")),
    }
    if reuse is not None and reuse["status"] != "ok":
        reuse = None  # the shared fit failed: this run fits on its own (and reports why)
    cpu_start = time.process_time()
    try:
        with (
            threadpool_limits(limits=common["threads"]),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            _fit_and_score(task, X, y, common, record, reuse)
    except Exception as exc:  # a failing head is recorded, never fatal to the bench
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
    else:  # e.g. ConvergenceWarning: kept in the record, not printed per run
        seen = dict.fromkeys(f"{w.category.__name__}: {w.message}"[:200] for w in caught)
        record["warnings"] = list(seen)[:5]
    record["cpu_s"] = time.process_time() - cpu_start  # this process, all its threads
    return record


def _fit_and_score(task: Task, X, y, common: dict, record: dict, reuse: dict | None) -> None:
    if task.val is not None:  # validation: fit on the rest of the training rows, score
        fit_rows, val_rows = task.val
        head, _, _ = _fit(task, fit_rows, X, y, common)
        _, pred = _predict(head, X[val_rows], common["n_classes"])
        record["val"] = {"accuracy": float(np.mean(pred == y[val_rows])),
                         "n_fit": int(len(fit_rows)), "n_val": int(len(val_rows)),
                         "fraction": common["val"]}  # fmt: skip
    if reuse is not None:  # the same fit as reuse's: its scores, not a second computation
        record.update({key: reuse[key] for key in _SHARED}, fit_shared_with=reuse["run_id"])
        return
    started = time.perf_counter()
    head, record["params"], record["sweep"] = _fit(task, task.train, X, y, common)
    record["fit_s"] = time.perf_counter() - started - (record["sweep"] or {}).get("seconds", 0)
    X_eval = X[task.evaluate]
    started = time.perf_counter()
    proba, pred = _predict(head, X_eval, common["n_classes"])
    record["predict_s"] = time.perf_counter() - started
    metrics = score(y[task.evaluate], pred, proba, common["n_classes"])
    record["metrics"] = {k: (None if math.isnan(v) else v) for k, v in metrics.items()}


def _fit(task: Task, rows: np.ndarray, X, y, common: dict):
    """The head fitted on ``rows`` (after the sweep, when on): ``(head, params, sweep)``."""
    params, swept = dict(common["head_params"].get(task.head, {})), None
    if common["sweep"]:
        build = functools.partial(_new_head, threads=common["threads"])
        swept = sweep(task, rows, X, y, params, build)
        params.update(swept.get("best") or {})
    head = _new_head(task.head, task.seed, params, common["threads"])
    head.fit(X[rows], y[rows])  # X[rows]: a copy, so memory-mapped input is read once
    return head, params, swept


def build_head(name: str, seed: int, params: dict | None = None):
    """An unfitted head from ``embedkit.heads.make_head`` with the run's seed."""
    return make_head(name, random_state=seed, **(params or {}))


def _new_head(name: str, seed: int, params: dict, threads: int):
    head = build_head(name, seed, params)
    if "torch" in sys.modules:  # torch heads: one worker's share of the cores
        sys.modules["torch"].set_num_threads(threads)
    return head


def _predict(head, X: np.ndarray, n_classes: int):
    """``(proba (N, n_classes), predicted class (N,))`` from one pass; every head has proba."""
    proba = np.zeros((len(X), n_classes))
    proba[:, np.asarray(head.classes_, dtype=np.int64)] = head.predict_proba(X)
    return proba, proba.argmax(axis=1)
