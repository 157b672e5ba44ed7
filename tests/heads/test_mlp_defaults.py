"""The mlp head's defaults are the setting that cross-validation chose on three stores.

``benchmarks/bench_mlp_defaults.py`` scores settings of the mlp head by cross-validation
of the training rows of the reference stores (issue 23) and records every fold; the test
split plays no part. The defaults must be the setting with the best mean CV, and better on
every store than the former defaults, so a change of either side without the other fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedkit.heads import make_head

RECORDS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "mlp_defaults.jsonl"
FORMER = {"dropout": 0.2, "lr": 3e-3}


def cv_by_setting() -> dict[tuple, dict[str, float]]:
    """(dropout, lr) -> {store: mean CV accuracy}, from the latest record of each key."""
    latest = {}
    for line in RECORDS.read_text().splitlines():
        record = json.loads(line)
        latest[json.dumps(record["key"], sort_keys=True)] = record
    out: dict[tuple, dict[str, float]] = {}
    for record in latest.values():
        if "setting" not in record["key"]:
            continue  # a bench recorded beside them (``--bench``)
        setting = record["key"]["setting"]
        key = (setting["dropout"], setting["lr"])
        out.setdefault(key, {})[record["key"]["store"]] = float(np.mean(record["cv"]))
    return out


def test_mlp_defaults_are_the_best_cross_validated_setting():
    scores = cv_by_setting()
    stores = set.union(*(set(s) for s in scores.values()))
    assert len(stores) == 3 and all(set(s) == stores for s in scores.values())
    best = max(scores, key=lambda k: np.mean(list(scores[k].values())))
    params = make_head("mlp").get_params()
    assert (params["dropout"], params["lr"]) == best
    former = scores[(FORMER["dropout"], FORMER["lr"])]
    assert all(scores[best][s] > former[s] for s in stores)
