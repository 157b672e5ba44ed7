"""Where a store's picked rows came from: an image file, a text, or a row of an array.

The store records each extraction's source path in its provenance (``runs``); this module
opens those sources again (best effort: a moved or deleted source gives no source) to show
a person what to label.

    embedkit select feats.h5 --budget 50 --out picks.csv    # picks.csv's source column
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError


@dataclass(frozen=True)
class ItemSource:
    """One picked item as a person sees it."""

    kind: str  # "image" (a file), "text", "array" (a row of a .npy) or "" (not found)
    text: str  # the file path or the text; "" when not found
    pixels: np.ndarray | None = None  # (H, W[, 3]) uint8 for array rows that are images


def item_sources(provenance: dict, ids: list[str]) -> list[ItemSource]:
    """The source of each of ``ids``, looked up in the sources the store was extracted from."""
    from embedkit.extract.opening import open_source

    runs = provenance.get("runs", [])
    runs = json.loads(runs) if isinstance(runs, str) else runs
    paths = list(dict.fromkeys(str(r["source"]) for r in runs if r.get("source")))
    found: dict[str, ItemSource] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        try:
            source = open_source(path)
        except UserInputError:
            continue
        found.update(_lookup(source, [i for i in ids if i not in found]))
    return [found.get(i, ItemSource("", "")) for i in ids]


def _lookup(source, ids: list[str]) -> dict[str, ItemSource]:
    from embedkit.extract.sources import name_from_id

    out: dict[str, ItemSource] = {}
    if source.kind == "image":
        for item in ids:
            for name in (item, item.partition("/")[2]):  # extract may prefix ids with "<split>/"
                path = Path(os.fsdecode(source.path)) / os.fsdecode(name_from_id(name))
                if name and path.is_file():
                    out[item] = ItemSource("image", str(path))
                    break
        return out
    if source.kind == "array":
        n = len(source.array)
        for item in ids:
            for name in (item, item.rpartition("/")[2]):
                if name.isdigit() and int(name) < n:
                    row = source.read(int(name))
                    out[item] = ItemSource("array", f"{source.path}[{name}]", _as_image(row))
                    break
        return out
    where = {i: n for n, i in enumerate(source.scan().ids)}
    for item in ids:
        n = where.get(item, where.get(item.partition("/")[2]))
        if n is not None:
            out[item] = ItemSource("text", str(source.read(n)))
    return out


def _as_image(row: np.ndarray) -> np.ndarray | None:
    """An array row that looks like an image, as uint8 (H, W[, 3]); else None."""
    if row.ndim == 3 and row.shape[0] in (1, 3) and row.shape[-1] not in (1, 3):
        row = np.moveaxis(row, 0, -1)  # (C, H, W) -> (H, W, C)
    if row.ndim == 3 and row.shape[-1] == 1:
        row = row[..., 0]
    if row.ndim not in (2, 3) or min(row.shape[:2]) < 4:
        return None
    if row.dtype != np.uint8:
        lo, hi = float(row.min()), float(row.max())
        row = ((row - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    return row
