"""Where items come from: image folders, text files (.txt, .csv, .jsonl) and .npy arrays.

Every source answers two questions behind one small interface, so a new one is a
short class: ``scan()`` lists the items cheaply (ids, sha256 digests of the raw
content, label names, splits) and ``read(i)`` returns item ``i`` raw (file bytes, a
str, an array row). :func:`open_source` picks the class from the path.

    embedkit extract lite0.onnx photos/ --out feats.h5          # photos/<class>/<file>
    embedkit extract minilm.onnx reviews.csv --out feats.h5 --text-column body
    embedkit extract model.onnx X.npy --labels y.npy --split train --out feats.h5
"""

from __future__ import annotations

import csv
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import UserInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_KINDS = "an image folder, .txt, .csv, .jsonl or .npy"


@dataclass(frozen=True)
class Listing:
    """What a source holds, item by item, in source order."""

    ids: tuple[str, ...]  # unique within the source
    digests: tuple[str, ...]  # sha256 hex of each item's raw content
    labels: tuple[str | None, ...]  # label names; None = unlabelled
    splits: tuple[str | None, ...]  # "train", "val", "test" or None
    label_order: tuple[str, ...] = ()  # class names in index order; () = sorted names

    @property
    def label_names(self) -> list[str]:
        """Class names in index order: ``label_order``, else the sorted distinct labels."""
        names = list(self.label_order)
        rest = {x for x in self.labels if x is not None} - set(names)
        numeric = all(x.lstrip("-").isdigit() for x in rest)
        return names + sorted(rest, key=(lambda x: (int(x), x)) if numeric else None)

    def __len__(self) -> int:
        return len(self.ids)

    def tagged(self, split: str | None, id_prefix: str | None) -> Listing:
        """Tag every item with ``split`` and prefix its id (default ``"<split>/"``)."""
        prefix = id_prefix if id_prefix is not None else (f"{split}/" if split else "")
        return replace(
            self,
            ids=tuple(prefix + i for i in self.ids),
            splits=self.splits if split is None else (split,) * len(self.ids),
        )


class Source(ABC):
    """A dataset extract can read; subclasses set ``kind`` and implement two methods."""

    kind: str = ""  # "image" (raw file bytes), "text" (str) or "array" (numpy rows)

    def __init__(self, path: Path, limit: int | None = None):
        self.path = path
        self.limit = limit  # read only the first ``limit`` items

    @abstractmethod
    def scan(self) -> Listing:
        """List the items: ids, digests, labels and splits (cheap, no decoding)."""

    @abstractmethod
    def read(self, index: int) -> Any:
        """Return item ``index`` (a position in the listing) raw."""

    def describe(self, index: int) -> str:
        """How error messages name item ``index``."""
        return f"{self.path}: row {index}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageFolderSource(Source):
    """Image files under a folder; ``root/<class>/x.jpg`` gets the label ``<class>``.

    Ids are the paths relative to the folder; files directly in the folder are unlabelled.
    """

    kind = "image"

    def scan(self) -> Listing:
        files = sorted(
            p.relative_to(self.path).as_posix()
            for p in self.path.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.path).parts)
        )[: self.limit]
        if not files:
            raise UserInputError(
                f"{self.path}: no image files found ({', '.join(IMAGE_SUFFIXES)}); "
                "pass a folder of images, one subfolder per class"
            )
        self._files = files
        labels = tuple(f.split("/", 1)[0] if "/" in f else None for f in files)
        digests = tuple(_sha((self.path / f).read_bytes()) for f in files)
        return Listing(tuple(files), digests, labels, (None,) * len(files))

    def read(self, index: int) -> bytes:
        return (self.path / self._files[index]).read_bytes()

    def describe(self, index: int) -> str:
        return str(self.path / self._files[index])


class _TextSource(Source):
    kind = "text"
    _texts: list[str]

    def read(self, index: int) -> str:
        return self._texts[index]

    def _listing(self, texts, ids=None, labels=None, splits=None) -> Listing:
        texts = texts[: self.limit]
        if not texts:
            raise UserInputError(f"{self.path}: no texts found; pass a file with one text per item")
        self._texts = texts
        n = len(texts)
        ids = tuple(ids[:n]) if ids is not None else tuple(str(i) for i in range(n))
        self._ids = ids
        return Listing(
            ids,
            tuple(_sha(t.encode("utf-8")) for t in texts),
            tuple(labels[:n]) if labels is not None else (None,) * n,
            tuple(splits[:n]) if splits is not None else (None,) * n,
        )

    def _read_text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserInputError(
                f"{self.path}: not UTF-8 text ({exc.reason}); re-save it as UTF-8"
            ) from None


class TextLinesSource(_TextSource):
    """A .txt file with one text per line; ids are line numbers from 0."""

    def describe(self, index: int) -> str:
        return f"{self.path}:{index + 1}"

    def scan(self) -> Listing:
        lines = self._read_text().splitlines()
        return self._listing(lines)


class TableSource(_TextSource):
    """A .csv/.tsv or .jsonl file with a text column, and optional label, id, split columns."""

    def __init__(self, path: Path, limit=None, *, text_column=None, label_column=None):
        super().__init__(path, limit)
        self.text_column = text_column
        self.label_column = label_column

    def describe(self, index: int) -> str:
        return f"{self.path}: item {self._ids[index]!r}"

    def _rows(self) -> list[dict[str, Any]]:
        text = self._read_text()
        if self.path.suffix.lower() in (".csv", ".tsv"):
            delimiter = "\t" if self.path.suffix.lower() == ".tsv" else ","
            return list(csv.DictReader(text.splitlines(), delimiter=delimiter))
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserInputError(f"{self.path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise UserInputError(f"{self.path}:{number}: expected a JSON object per line")
            rows.append(row)
        return rows

    def _column(self, rows, name: str | None, default: str, option: str) -> list | None:
        columns = list(rows[0]) if rows else []
        if name is None:
            name = default if default in columns else None
            if name is None:
                return None
        if name not in columns:
            raise UserInputError(
                f"{self.path}: no column {name!r} for {option}; columns: {', '.join(columns)}"
            )
        return [row.get(name) for row in rows]

    def scan(self) -> Listing:
        rows = self._rows()
        texts = self._column(rows, self.text_column or "text", "text", "--text-column")
        if texts is None:
            raise UserInputError(f"{self.path}: no texts found; pass a file with a header row")
        labels = self._column(rows, self.label_column, "label", "--label-column")
        ids = self._column(rows, None, "id", "ids")
        splits = self._column(rows, None, "split", "splits")
        return self._listing(
            ["" if t is None else str(t) for t in texts],
            ids=None if ids is None else [str(i) for i in ids],
            labels=None if labels is None else [_label(v) for v in labels],
            splits=None if splits is None else [str(s) if s else None for s in splits],
        )


def _label(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class ArraySource(Source):
    """Rows of a .npy array ``(N, ...)``; ids are row numbers; labels from ``labels.npy``.

    Integer labels below 0 mean unlabelled; a uint8 ``(N, H, W[, 3])`` array is a stack of
    images when the model's preprocessing is an image spec.
    """

    kind = "array"

    def __init__(self, path: Path, limit=None, *, labels: str | Path | None = None):
        super().__init__(path, limit)
        self.labels_path = None if labels is None else Path(labels)
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserInputError(f"{path}: not a .npy array ({exc}); save it with np.save") from exc
        if self.array.ndim < 1 or len(self.array) == 0:
            raise UserInputError(f"{path}: empty array; pass an (N, ...) array with N > 0")

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def scan(self) -> Listing:
        n = len(self.array) if self.limit is None else min(self.limit, len(self.array))
        digests = tuple(_sha(np.ascontiguousarray(self.array[i]).tobytes()) for i in range(n))
        labels, order = self._labels(n)
        return Listing(tuple(str(i) for i in range(n)), digests, labels, (None,) * n, order)

    def _labels(self, n: int) -> tuple[tuple[str | None, ...], tuple[str, ...]]:
        """Label names per row and their index order (integer labels keep their value)."""
        if self.labels_path is None:
            return (None,) * n, ()
        try:
            values = np.load(self.labels_path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserInputError(f"{self.labels_path}: not a .npy array of labels ({exc})") from exc
        if values.shape[:1] != self.array.shape[:1] or values.ndim != 1:
            raise UserInputError(
                f"{self.labels_path}: labels have shape {values.shape} but {self.path} has "
                f"{len(self.array)} rows; pass one label per row"
            )
        if values.dtype.kind in "iu":
            order = tuple(str(i) for i in range(int(values.max()) + 1))
            return tuple(None if v < 0 else str(int(v)) for v in values[:n]), order
        return tuple(_label(v.item() if hasattr(v, "item") else v) for v in values[:n]), ()

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.array[index])


def open_source(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: str | Path | None = None,
    limit: int | None = None,
) -> Source:
    """Open ``path`` as the source its type calls for.

    Parameters
    ----------
    path : str or Path
        An image folder, a ``.txt`` (one text per line), ``.csv``/``.tsv``/``.jsonl`` (with
        a text column) or ``.npy`` array.
    text_column, label_column : str, optional
        Columns of a table source (defaults: ``text``; ``label`` when present).
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
    path = Path(path)
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit {limit}: pass a positive number of items")
    if not path.exists():
        raise UserInputError(f"{path}: no such file or folder; pass {_KINDS}")
    suffix = path.suffix.lower()
    is_table = suffix in (".csv", ".tsv", ".jsonl")
    if (text_column or label_column) and not is_table:
        raise UserInputError(f"{path}: --text-column/--label-column apply to .csv and .jsonl files")
    if labels is not None and suffix != ".npy":
        raise UserInputError(f"{path}: --labels applies to .npy sources; folders name their labels")
    if path.is_dir():
        return ImageFolderSource(path, limit)
    if suffix == ".txt":
        return TextLinesSource(path, limit)
    if is_table:
        return TableSource(path, limit, text_column=text_column, label_column=label_column)
    if suffix == ".npy":
        return ArraySource(path, limit, labels=labels)
    raise UserInputError(f"{path}: unknown source type {suffix or '(none)'!r}; pass {_KINDS}")
