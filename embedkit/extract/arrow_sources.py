"""Arrow-backed sources: Parquet files and folders of parts, Arrow IPC/Feather files, folders
written by Hugging Face ``Dataset.save_to_disk``, and in-memory tables (see :func:`table_source`).

    embedkit extract minilm.onnx reviews.parquet --column body --label-column stars --out f.h5
    embedkit extract lite0.onnx hf_saved/ --column image --out f.h5     # save_to_disk folder

Data is read one Parquet row group or Arrow record batch at a time, never the whole file:
``scan`` streams through the batches once, ``read(i)`` decodes the data column of the batch
holding row ``i`` (the last :data:`CACHED_BATCHES` are kept). The data column, labels and
row ids follow docs/extract.md, "Parquet, Arrow and Hugging Face datasets".
"""

from __future__ import annotations

import bisect
import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedkit.errors import UserInputError, first_line, require
from embedkit.extract.preprocess import BadItem
from embedkit.extract.sources import Listing, Source, content_sha
from embedkit.extract.tables import check_column, id_value, split_value, text_value
from embedkit.rows.labels import check_classes, label_value

PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc", ".arrows")
DEFAULT_COLUMNS = ("text", "image", "path")  # tried in order when --column is not given
CACHED_BATCHES = 8  # decoded data-column batches kept for read()
TABLE_CHUNK = 8192  # rows per batch of an in-memory table
OPTIONS = ("--column", "--label-column", "--id-column")  # how messages name the columns
HF_SPLITS = {"train": "train", "validation": "val", "valid": "val", "val": "val", "test": "test"}


@dataclass
class _Part:
    """One file (or in-memory table) of a source: its batches, read on demand."""

    name: str  # id prefix of its rows ("" for a single file or table)
    where: str  # how messages name it (a path, or "pandas.DataFrame")
    counts: list[int]  # rows per batch
    read_batch: Callable[[int, list[str]], Any]  # (batch, columns) -> pyarrow.Table
    schema: Any  # pyarrow.Schema
    split: str | None = None  # a DatasetDict part's split
    label_names: tuple[str, ...] = ()  # a ClassLabel's names (Hugging Face)
    base: Path | None = None  # where relative image paths start


def pyarrow_module():
    return require("pyarrow", "arrow", "Parquet and Arrow sources")


def parquet_part(path: Path, name: str, base: Path) -> _Part:
    pq = require("pyarrow.parquet", "arrow", "Parquet sources")
    try:
        with pq.ParquetFile(path) as file:
            meta, schema = file.metadata, file.schema_arrow
    except Exception as exc:  # ArrowInvalid, OSError: not Parquet or truncated
        raise UserInputError(
            f"{path}: not a readable Parquet file ({first_line(exc, 160)}); re-write it"
        ) from None
    counts = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    return _Part(name, str(path), counts, _ParquetReader(path), schema, base=base)


def arrow_part(path: Path, name: str, base: Path, split=None, label_names=()) -> _Part:
    """An Arrow IPC file (random access to batches) or stream (read up to the batch)."""
    pa = pyarrow_module()
    try:
        with pa.memory_map(str(path)) as source:
            try:
                reader = pa.ipc.open_file(source)
                schema = reader.schema
                counts = [reader.get_batch(b).num_rows for b in range(reader.num_record_batches)]
                is_file = True
            except pa.ArrowInvalid:
                source.seek(0)
                stream = pa.ipc.open_stream(source)
                schema = stream.schema
                counts = [batch.num_rows for batch in stream]
                is_file = False
    except Exception as exc:
        raise UserInputError(
            f"{path}: not a readable Arrow IPC/Feather file ({first_line(exc, 160)}); re-write it"
        ) from None
    reader = functools.partial(_arrow_batch, path, is_file)
    return _Part(name, str(path), counts, reader, schema, split, tuple(label_names), base)


def table_part(table, where: str, name="", split=None, label_names=()) -> _Part:
    counts = [min(TABLE_CHUNK, table.num_rows - lo) for lo in range(0, table.num_rows, TABLE_CHUNK)]
    reader = functools.partial(_table_slice, table)
    return _Part(name, where, counts, reader, table.schema, split, tuple(label_names))


class _ParquetReader:
    """Row group ``b`` of a Parquet file; one open file per thread, none when pickled (Ray)."""

    def __init__(self, path: Path):
        self.path, self.local = path, threading.local()

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __call__(self, b: int, columns: list[str]):
        if getattr(self.local, "file", None) is None:
            pq = require("pyarrow.parquet", "arrow", "Parquet sources")
            self.local.file = pq.ParquetFile(self.path)
        return self.local.file.read_row_group(b, columns=columns)


def _arrow_batch(path: Path, is_file: bool, b: int, columns: list[str]):
    """Record batch ``b`` of a memory-mapped Arrow IPC file (direct) or stream (read to it)."""
    pa = pyarrow_module()
    with pa.memory_map(str(path)) as source:
        if is_file:
            batch = pa.ipc.open_file(source).get_batch(b)
        else:
            stream = pa.ipc.open_stream(source)
            for _ in range(b):
                stream.read_next_batch()
            batch = stream.read_next_batch()
    return pa.Table.from_batches([batch]).select(columns)


def _table_slice(table, b: int, columns: list[str]):
    return table.slice(b * TABLE_CHUNK, TABLE_CHUNK).select(columns)


class ArrowSource(Source):
    """Rows of Arrow data: a data column (text, image bytes or image paths) and optional
    label, id and split columns (how ids are made: docs/extract.md).

    ``media`` is what a string data column holds: ``"text"``, or ``"image"`` (paths).
    """

    def __init__(self, path, parts, limit=None, *, column=None, label_column=None,
                 id_column=None, media="text"):  # fmt: skip
        super().__init__(Path(path), limit)
        self.parts: list[_Part] = parts
        self.column, self.label_column, self.id_column = column, label_column, id_column
        if not parts:
            raise UserInputError(f"{self.path}: no Parquet or Arrow files found")
        self.schema = parts[0].schema
        self.column = self._pick_column(column)
        self.encoding = self._encoding(media)  # text, bytes, path or struct
        self.kind = "text" if self.encoding == "text" else "image"
        self._batches = [(p, b) for p, part in enumerate(parts) for b in range(len(part.counts))]
        rows = (parts[p].counts[b] for p, b in self._batches)
        self._starts = [0, *itertools.accumulate(rows)]  # first row of each batch, and the total
        self._init_cache()

    def _init_cache(self) -> None:
        self._cache: OrderedDict[int, list] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # Ray pickles sources into actors: no cache or lock
        return {k: v for k, v in self.__dict__.items() if k not in ("_cache", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_cache()

    # -- columns -------------------------------------------------------------------------
    def _read(self, p: int, b: int, columns: list[str]):
        part = self.parts[p]
        try:
            return part.read_batch(b, columns)
        except (KeyError, ValueError, OSError) as exc:  # ArrowInvalid is a ValueError
            unit = "row group" if part.where.endswith(PARQUET_SUFFIXES) else "batch"
            raise UserInputError(
                f"{part.where}: cannot read {unit} {b} of columns {', '.join(columns)} "
                f"({first_line(exc, 160)}); re-write the file"
            ) from None

    def _pick_column(self, column: str | None) -> str:
        names = list(self.schema.names)
        if column is None:
            column = next((c for c in DEFAULT_COLUMNS if c in names), None)
            if column is None:
                raise UserInputError(
                    f"{self.path}: no {'/'.join(DEFAULT_COLUMNS)} column; pass --column, one of: "
                    f"{', '.join(names)}"
                )
        for name, option in zip((column, self.label_column, self.id_column), OPTIONS):
            check_column(self.path, names, name, option)
        return column

    def _encoding(self, media: str) -> str:
        pa = pyarrow_module()
        t = self.schema.field(self.column).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_view(pa, t, "string"):
            return "path" if media == "image" else "text"
        binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary)
        if any(check(t) for check in binary) or _is_view(pa, t, "binary"):
            return "bytes"
        if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
            return "struct"  # a Hugging Face Image: {"bytes": ..., "path": ...}
        raise UserInputError(
            f"{self.path}: column {self.column!r} holds {t}; pass --column naming text "
            "(string), image bytes (binary) or image paths (string)"
        )

    # -- the Source interface ------------------------------------------------------------
    def scan(self) -> Listing:
        ids, digests, labels, splits = [], [], [], []
        names = list(self.parts[0].label_names)
        id_col = self.id_column or ("id" if "id" in self.schema.names else None)
        split_col = "split" if "split" in self.schema.names else None
        label_col = self.label_column or ("label" if "label" in self.schema.names else None)
        wanted = [c for c in dict.fromkeys((self.column, label_col, id_col, split_col)) if c]
        limit = self._starts[-1] if self.limit is None else min(self.limit, self._starts[-1])
        for k, (p, b) in enumerate(self._batches):
            if self._starts[k] >= limit:
                break
            part, first = self.parts[p], self._starts[k] - self._part_start(p)
            table = self._read(p, b, wanted)
            n = min(table.num_rows, limit - self._starts[k])
            cols = {c: table.column(c).slice(0, n).to_pylist() for c in wanted}
            values = cols[self.column]
            self._keep(k, values)
            for r in range(n):
                where = f"{part.where}: row {first + r}"
                digests.append(content_sha(self._content(part, values[r])))
                ids.append(
                    id_value(cols[id_col][r], where) if id_col else f"{part.name}{first + r}"
                )
                labels.append(self._label(part, cols[label_col][r], where) if label_col else None)
                own = split_col and part.split is None
                splits.append(split_value(cols[split_col][r], where) if own else part.split)
        if not ids:
            raise UserInputError(f"{self.path}: no rows found; pass a file with rows")
        check_classes(len(set(labels) - {None}), str(self.path))
        return Listing(tuple(ids), tuple(digests), tuple(labels), tuple(splits), tuple(names))

    def read(self, index: int) -> Any:
        k = bisect.bisect_right(self._starts, index) - 1
        with self._lock:
            values = self._cache.get(k)
            if values is not None:
                self._cache.move_to_end(k)
        if values is None:
            p, b = self._batches[k]
            values = self._read(p, b, [self.column]).column(self.column).to_pylist()
            self._keep(k, values)
        return self._item(self.parts[self._batches[k][0]], values[index - self._starts[k]])

    def describe(self, index: int) -> str:
        k = bisect.bisect_right(self._starts, index) - 1
        p = self._batches[k][0]
        return f"{self.parts[p].where}: row {index - self._part_start(p)} ({self.column!r})"

    # -- helpers -------------------------------------------------------------------------
    def _part_start(self, p: int) -> int:
        k = next(k for k, (q, _) in enumerate(self._batches) if q == p)
        return self._starts[k]

    def _keep(self, k: int, values: list) -> None:
        with self._lock:
            self._cache[k] = values
            self._cache.move_to_end(k)
            while len(self._cache) > CACHED_BATCHES:
                self._cache.popitem(last=False)

    def _label(self, part: _Part, value, where: str) -> str | None:
        if part.label_names and isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                return None  # a Hugging Face ClassLabel's "no label"
            if value >= len(part.label_names):
                raise UserInputError(
                    f"{where}: label {value} but the dataset names {len(part.label_names)} "
                    "classes; fix the label or the dataset's features"
                )
            return part.label_names[value]
        return label_value(value, where)

    def _content(self, part: _Part, value) -> bytes:
        """The bytes whose sha256 is the item's digest (a missing image: its path's)."""
        try:
            item = self._item(part, value)
        except (BadItem, OSError):
            return b"missing:" + str(value).encode("utf-8", "surrogatepass")
        return item.encode("utf-8") if isinstance(item, str) else item

    def _item(self, part: _Part, value) -> str | bytes:
        if self.encoding == "text":
            return text_value(value, part.where)
        if isinstance(value, dict):  # a Hugging Face Image struct
            value = value.get("bytes") or value.get("path")
            if isinstance(value, str):
                return self._file(part, value)
        if value is None:
            raise BadItem(f"column {self.column!r} is empty (null)")
        return self._file(part, value) if self.encoding == "path" else bytes(value)

    def _file(self, part: _Part, value: str) -> bytes:
        path = Path(value)
        if not path.is_absolute() and part.base is not None:
            path = part.base / path
        return path.read_bytes()


def _is_view(pa, t, what: str) -> bool:
    check = getattr(pa.types, f"is_{what}_view", None)
    return bool(check and check(t))
