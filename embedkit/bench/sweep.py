"""The optional per-head sweep: tune each run on a validation part of its own training rows.

    embedkit bench stores/fmnist-lite0.h5 --sweep --out bench-sweep/

The grids are the head registry's (``embedkit.heads.registry.HeadRecord.sweep``); values
of parameters that a head does not have are skipped. The test split is never seen.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.model_selection import ParameterGrid

from embedkit.bench.data import carve_validation
from embedkit.heads.registry import head_record


def sweep_candidates(name: str, head) -> list[dict]:
    """Parameter settings to try for ``head``: its registry grid, as a ParameterGrid.

    Examples
    --------
    >>> from embedkit.heads import make_head
    >>> sweep_candidates("knn", make_head("knn"))[:2]
    [{'n_neighbors': 1}, {'n_neighbors': 3}]
    """
    params = head.get_params()
    grid = {key: values for key, values in head_record(name).sweep.items() if key in params}
    return list(ParameterGrid(grid)) if grid else []


def sweep(task, rows: np.ndarray, X: np.ndarray, y: np.ndarray, fixed: dict, build) -> dict:
    """Pick parameters by accuracy on a validation part of the run's training ``rows``.

    ``build(name, seed, params)`` returns an unfitted head. Returns the sweep's record:
    the best setting (None when skipped), its validation accuracy, sizes and seconds.
    """
    started = time.perf_counter()
    candidates = sweep_candidates(task.head, build(task.head, task.seed, fixed))
    split = carve_validation(y, rows, task.seed)
    if not candidates or split is None:
        why = "no sweep grid for this head" if not candidates else "a class has under 2 rows"
        return {"best": None, "skipped": why, "seconds": time.perf_counter() - started}
    fit_rows, val_rows = split
    scores = []
    for candidate in candidates:
        try:
            head = build(task.head, task.seed, {**fixed, **candidate})
            head.fit(X[fit_rows], y[fit_rows])
            scores.append(float(np.mean(head.predict(X[val_rows]) == y[val_rows])))
        except Exception:  # a candidate that cannot fit (e.g. k > rows) just loses
            scores.append(-1.0)
    best = int(np.argmax(scores))  # ties go to the earlier candidate
    return {
        "best": candidates[best],
        "val_accuracy": scores[best],
        "n_candidates": len(candidates),
        "n_fit": int(len(fit_rows)),
        "n_val": int(len(val_rows)),
        "seconds": time.perf_counter() - started,
    }
