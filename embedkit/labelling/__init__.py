"""Sparse labels: choose which rows to label, and import the labels back.

The library side of ``embedkit select`` and ``embedkit label`` (and of ``bench
--labelling``): strategies run on the cached features of a store's train rows, so a
round of selection costs seconds, not a pass of the backbone.

    embedkit select feats.h5 --budget 100 --out picks.csv
    embedkit label feats.h5 picks-labelled.csv
"""

from embedkit.labelling.strategies import STRATEGIES, Selection, select

__all__ = ["STRATEGIES", "Selection", "select"]
