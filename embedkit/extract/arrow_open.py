"""Open Arrow data as a source: a path (:func:`open_arrow`) or an in-memory table
(:func:`table_source`: a ``datasets.Dataset``/``DatasetDict``, a pandas ``DataFrame``, a
``pyarrow.Table``). Local data only: a Hugging Face hub name is refused with what to do.

    embedkit extract minilm.onnx parts/ --column text --out f.h5       # folder of .parquet
    >>> extract("minilm.onnx", dataframe, "f.h5", column="text")      # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from embedkit.errors import UserInputError
from embedkit.extract.arrow_sources import (
    ARROW_SUFFIXES,
    HF_SPLITS,
    PARQUET_SUFFIXES,
    ArrowSource,
    arrow_part,
    parquet_part,
    pyarrow_module,
    table_part,
)

_HF_HINT = (
    "embedkit reads local data only: save it first with "
    "datasets.load_dataset(NAME).save_to_disk(DIR) and pass DIR"
)


def is_arrow_path(path: Path) -> bool:
    """Whether ``path`` is a Parquet/Arrow file, a folder of Parquet parts or a saved dataset."""
    if path.is_dir():
        saved = any((path / name).is_file() for name in ("state.json", "dataset_dict.json"))
        parts = (p for p in path.rglob("*") if p.is_file())
        return saved or any(p.suffix.lower() in PARQUET_SUFFIXES for p in parts)
    return path.suffix.lower() in PARQUET_SUFFIXES + ARROW_SUFFIXES


def hub_hint(path: Path) -> str:
    """The hint for a missing path that looks like a hub name (``imdb``, ``owner/name``)."""
    name = path.as_posix()
    local = path.is_absolute() or path.suffix or name.startswith(".") or name.count("/") > 1
    return "" if local else f" ({_HF_HINT})"


def open_arrow(path: Path, limit=None, **columns) -> ArrowSource:
    """Open a Parquet file, a folder of Parquet parts, an Arrow IPC/Feather file, or a folder
    written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``; ``columns`` are
    :class:`ArrowSource`'s (``column``, ``label_column``, ``id_column``, ``media``).

    Examples
    --------
    >>> import pyarrow as pa, pyarrow.parquet as pq, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.parquet")
    >>> pq.write_table(pa.table({"text": ["a cat", "a dog"], "y": [0, 1]}), path)
    >>> src = open_arrow(Path(path), label_column="y")
    >>> listing = src.scan()
    >>> listing.ids, listing.labels, src.read(1)
    (('0', '1'), ('0', '1'), 'a dog')
    """
    pyarrow_module()
    if path.is_dir():
        parts = _folder_parts(path)
    elif path.suffix.lower() in PARQUET_SUFFIXES:
        parts = [parquet_part(path, "", path.parent)]
    else:
        parts = [arrow_part(path, "", path.parent)]
    return ArrowSource(path, parts, limit, **columns)


def _folder_parts(path: Path) -> list:
    if (path / "dataset_dict.json").is_file():
        fix = "save the dataset with train/validation/test splits, or pass one split's folder"
        names = _json(path / "dataset_dict.json").get("splits", [])
        splits = {name: _hf_split(name, f"{path}: split", fix) for name in names}
        return [
            p
            for name, split in splits.items()
            for p in _saved_parts(path / name, f"{name}/", split)
        ]
    if (path / "state.json").is_file():
        return _saved_parts(path, "", None)
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES
        and not any(x.startswith((".", "_")) for x in p.relative_to(path).parts)
    )  # fmt: skip
    return [parquet_part(p, f"{p.relative_to(path).as_posix()}:", path) for p in files]


def _saved_parts(folder: Path, prefix: str, split: str | None) -> list:
    """The arrow files of one ``Dataset.save_to_disk`` folder, with its ClassLabel names."""
    state = _json(folder / "state.json")
    info = _json(folder / "dataset_info.json") if (folder / "dataset_info.json").is_file() else {}
    files = [f["filename"] for f in state.get("_data_files", [])]
    if not files:
        raise UserInputError(f"{folder}/state.json: lists no data files; save the dataset again")
    names = _class_names(info.get("features") or {})
    parts = [arrow_part(folder / f, prefix, folder, split, names) for f in files]
    if len(parts) == 1:
        return parts
    counts = [n for part in parts for n in part.counts]  # one part, rows numbered across files
    where = str((folder / files[0]).parent)
    return [replace(parts[0], counts=counts, read_batch=_Concat(parts), where=where)]


class _Concat:
    """Batch ``b`` of several parts' batches, one after the other (picklable for Ray)."""

    def __init__(self, parts: list):
        self.parts = parts
        self.batches = [(k, b) for k, part in enumerate(parts) for b in range(len(part.counts))]

    def __call__(self, b: int, columns: list[str]):
        k, local = self.batches[b]
        return self.parts[k].read_batch(local, columns)


def _hf_split(name: str, what: str, fix: str) -> str:
    """Our split name for a Hugging Face split ``name``; others are refused with ``fix``."""
    if name not in HF_SPLITS:
        raise UserInputError(f"{what} {name!r} is not one of: {', '.join(HF_SPLITS)}; {fix}")
    return HF_SPLITS[name]


def _class_names(features: dict) -> tuple[str, ...]:
    """The names of the dataset's one ClassLabel feature, if it has exactly one."""
    labels = [
        f for f in features.values() if isinstance(f, dict) and f.get("_type") == "ClassLabel"
    ]
    return tuple(str(n) for n in labels[0].get("names", [])) if len(labels) == 1 else ()


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: not readable JSON ({exc}); save the dataset again") from None
    if not isinstance(value, dict):
        raise UserInputError(f"{path}: expected a JSON object; save the dataset again")
    return value


def table_source(obj: Any, limit=None, **columns) -> ArrowSource:
    """A source over an in-memory ``datasets.Dataset`` or ``DatasetDict``, pandas
    ``DataFrame`` or ``pyarrow.Table`` (ids: row numbers, ``<split>/<row>`` for a dict);
    ``columns`` as for :func:`open_arrow`.

    Examples
    --------
    >>> import pandas as pd
    >>> src = table_source(pd.DataFrame({"text": ["x", "y"], "label": ["a", "b"]}))
    >>> src.scan().labels, src.path.name
    (('a', 'b'), 'pandas.DataFrame')
    """
    pa = pyarrow_module()
    kind = f"{type(obj).__module__.split('.')[0]}.{type(obj).__name__}"
    if kind == "datasets.DatasetDict":
        fix = "pass one split (dataset[NAME]) or rename it"
        splits = {name: _hf_split(name, "DatasetDict split", fix) for name in obj}
        parts = [
            _dataset_part(obj[name], f"DatasetDict[{name!r}]", f"{name}/", split)
            for name, split in splits.items()
        ]
    elif kind == "datasets.Dataset":
        parts = [_dataset_part(obj, "datasets.Dataset", "", None)]
    elif kind.startswith("datasets.Iterable"):
        raise UserInputError(
            f"a {kind} streams from the hub; {_HF_HINT} (or pass a Dataset loaded from disk)"
        )
    elif kind == "pandas.DataFrame":
        parts = [table_part(pa.Table.from_pandas(obj, preserve_index=False), kind)]
    elif isinstance(obj, pa.Table):
        parts = [table_part(obj, "pyarrow.Table")]
    else:
        raise UserInputError(
            f"cannot read a {kind} as a source; pass a path, a datasets.Dataset, a pandas "
            "DataFrame or a pyarrow.Table"
        )
    return ArrowSource(Path(kind), parts, limit, **columns)


def _dataset_part(ds, where: str, prefix: str, split: str | None):
    """A ``datasets.Dataset`` as a part: its Arrow table (indices applied) and class names."""
    table = ds.data.table if getattr(ds, "_indices", None) is None else ds.with_format("arrow")[:]
    names = [v.names for v in (ds.features or {}).values() if type(v).__name__ == "ClassLabel"]
    return table_part(table, where, prefix, split, names[0] if len(names) == 1 else ())
