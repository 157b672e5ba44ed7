"""``auto``: choose a selection strategy by budget, or by what the simulation measured.

Without a record, the rule follows what ``bench --labelling`` measured on the reference
stores: ``typical`` while the labels (after this round) are few per class, ``hybrid``
when there are many. With a ``bench --labelling`` summary of the same store (its
``labelling.json``), the strategy measured best at the nearest budget wins.

    embedkit select feats.h5 --budget 100 --strategy auto --record bench/labelling.json

Examples
--------
>>> import numpy as np
>>> choose(np.full(100, -1), 10, None)[0]
'typical'
"""

from __future__ import annotations

import numpy as np

LOW_BUDGET = 20  # labels per class (after the round) up to which ``typical`` is chosen


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
    if per_class <= LOW_BUDGET:
        return "typical", f"auto: {per_class:.1f} labels/class <= {LOW_BUDGET} -> typical"
    return "hybrid", f"auto: {per_class:.1f} labels/class > {LOW_BUDGET} -> hybrid"
