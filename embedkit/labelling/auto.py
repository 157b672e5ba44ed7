"""``auto``: choose a selection strategy by budget, or by what the simulation measured.

Without a record, the rule follows what ``bench --labelling`` measured on the reference
stores: ``typical`` while the labels (after this round) are few per class (up to 5),
``spread-margin`` from there up to 20 per class (the rows whose spread label is least
sure, once typical picks have labelled each region's centre), ``hybrid`` above. With a
``bench --labelling`` summary of the same store (its ``labelling.json``), the strategy
measured best at the nearest budget wins.

    embedkit select feats.h5 --budget 100 --strategy auto --record bench/labelling.json

Examples
--------
>>> import numpy as np
>>> choose(np.full(100, -1), 10, None)[0]
'typical'
"""

from __future__ import annotations

import numpy as np

TYPICAL_BUDGET = 5  # labels per class (after the round) up to which ``typical`` is chosen
LOW_BUDGET = 20  # ... and up to which ``spread-margin`` is; ``hybrid`` above


def choose(labels: np.ndarray, budget: int, record: dict | None) -> tuple[str, str]:
    """The strategy for a round of ``budget`` labels, and one line saying why."""
    labels = np.asarray(labels)
    known = labels[labels >= 0]
    n_classes = len(np.unique(known))
    if n_classes < 2:
        return "typical", "auto: no labels of two classes yet -> typical"
    per_class = (len(known) + budget) / n_classes
    if record and record.get("best"):
        best = {float(k): v for k, v in record["best"].items()}  # labels/class -> strategy
        nearest = min(best, key=lambda b: abs(np.log(b) - np.log(per_class)))
        return best[nearest], (
            f"auto: measured best at {nearest:g} labels/class on this store -> {best[nearest]}"
        )
    if per_class <= TYPICAL_BUDGET:
        return "typical", f"auto: {per_class:.1f} labels/class <= {TYPICAL_BUDGET} -> typical"
    if per_class <= LOW_BUDGET:
        why = f"{TYPICAL_BUDGET} < {per_class:.1f} labels/class <= {LOW_BUDGET}"
        return "spread-margin", f"auto: {why} -> spread-margin"
    return "hybrid", f"auto: {per_class:.1f} labels/class > {LOW_BUDGET} -> hybrid"
