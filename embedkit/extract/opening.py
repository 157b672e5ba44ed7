"""Open a path or an in-memory table as the source its type calls for.

embedkit extract lite0.onnx images/ --out feats.h5        # an image folder
embedkit extract minilm.onnx parts/ --column text --out f.h5   # a folder of .parquet
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embedkit.errors import UserInputError
from embedkit.extract.sources import (
    ArraySource,
    ImageFolderSource,
    Source,
    TableSource,
    TextLinesSource,
)

_KINDS = "an image folder, .txt, .csv, .jsonl, .npy, .parquet, .arrow or a saved dataset folder"


def open_source(
    path: Any,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: str | Path | None = None,
    limit: int | None = None,
    column: str | None = None,
    id_column: str | None = None,
    media: str = "text",
) -> Source:
    """Open ``path`` as the source its type calls for.

    Parameters
    ----------
    path : str, Path or table
        An image folder, a ``.txt`` (one text per line), ``.csv``/``.tsv``/``.jsonl`` (with
        a text column) or ``.npy`` array; a ``.parquet`` file or folder of parts, an
        ``.arrow``/``.feather`` file or a ``save_to_disk`` folder; or an in-memory
        ``datasets.Dataset``, pandas ``DataFrame`` or ``pyarrow.Table`` (arrow_sources.py).
    text_column, label_column, column, id_column : str, optional
        Columns of a table source (defaults: ``text``; ``label`` and ``id`` when present);
        ``column`` is the data column of any table (``text_column`` of CSV/JSONL).
    media : str
        What a string column of an Arrow source holds: ``"text"``, or ``"image"`` paths.
    labels : str or Path, optional
        A ``.npy`` of labels, one per row of a ``.npy`` source.
    limit : int, optional
        Use only the first ``limit`` items.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.zeros((3, 4), np.float32))
    >>> src = open_source(path)
    >>> src.scan().ids
    ('0', '1', '2')
    """
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit {limit}: pass a positive number of items")
    from embedkit.extract import arrow_open as arrow  # pyarrow only when asked for

    columns = {"column": column or text_column, "label_column": label_column,
               "id_column": id_column}  # fmt: skip
    if not isinstance(path, (str, os.PathLike)):
        return arrow.table_source(path, limit, **columns, media=media)
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or folder; pass {_KINDS}{arrow.hub_hint(path)}")
    suffix = path.suffix.lower()
    if arrow.is_arrow_path(path) and labels is None:
        return arrow.open_arrow(path, limit, **columns, media=media)
    is_table = suffix in (".csv", ".tsv", ".jsonl")
    if any(columns.values()) and not is_table:
        raise UserInputError(
            f"{path}: --column/--text-column/--label-column/--id-column apply to tables "
            "(.csv, .jsonl, .parquet, .arrow, saved datasets)"
        )
    if labels is not None and suffix != ".npy":
        raise UserInputError(f"{path}: --labels applies to .npy sources; folders name their labels")
    if path.is_dir():
        return ImageFolderSource(path, limit)
    if suffix == ".txt":
        return TextLinesSource(path, limit)
    if is_table:
        return TableSource(path, limit, **columns)
    if suffix == ".npy":
        return ArraySource(path, limit, labels=labels)
    raise UserInputError(f"{path}: unknown source type {suffix or '(none)'!r}; pass {_KINDS}")
