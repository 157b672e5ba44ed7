"""Where items come from: image folders, text files (.txt, .csv, .jsonl) and .npy arrays.

Every source answers two questions behind one small interface, so a new one is a
short class: ``scan()`` lists the items cheaply (ids, sha256 digests of the raw
content, label names, splits) and ``read(i)`` returns item ``i`` raw (file bytes, a
str, an array row). :func:`~embedkit.extract.opening.open_source` picks the class from the path.

    embedkit extract lite0.onnx photos/ --out feats.h5          # photos/<class>/<file>
    embedkit extract minilm.onnx reviews.csv --out feats.h5 --text-column body
    embedkit extract model.onnx X.npy --labels y.npy --split train --out feats.h5
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import UserInputError
from embedkit.extract.tables import (
    check_column,
    csv_rows,
    id_value,
    jsonl_rows,
    load_npy,
    split_value,
    text_value,
)
from embedkit.rows.labels import array_labels, check_classes, label_value

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


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

    def rows(self, positions) -> dict[str, list]:
        """The ids, digests, labels and splits of the items at ``positions``."""
        return {key: [getattr(self, key)[i] for i in positions]
                for key in ("ids", "digests", "labels", "splits")}  # fmt: skip

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


def content_sha(data: bytes | str | np.ndarray) -> str:
    """The content digest extract records for an item (and ``CachedEncoder`` looks up):
    the sha256 of its bytes, of a text's UTF-8, or of an array row's contiguous bytes.

    Examples
    --------
    >>> content_sha("a") == content_sha(b"a") == content_sha(np.frombuffer(b"a", np.uint8))
    True
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    return hashlib.sha256(data).hexdigest()


def id_from_name(name: str) -> str:
    r"""The item id of a file name (as ``os.fsdecode`` gives it): valid UTF-8, reversible.

    A byte that is not UTF-8 (a surrogate from ``surrogateescape``) is written ``\xNN`` and
    a backslash ``\\``; any other name is its own id. :func:`name_from_id` inverts it.

    Examples
    --------
    >>> id_from_name(os.fsdecode(b"cat/caf\xe9.jpg"))
    'cat/caf\\xe9.jpg'
    >>> name_from_id('cat/caf\\xe9.jpg')
    b'cat/caf\xe9.jpg'
    """
    if "\\" not in name and not _SURROGATE.search(name):
        return name
    return _SURROGATE.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}", name.replace("\\", "\\\\"))


def name_from_id(item_id: str) -> bytes:
    """The file name bytes an image folder's item id stands for (the inverse of id_from_name)."""
    parts = re.split(r"(\\\\|\\x[0-9a-f]{2})", item_id)
    return b"".join(
        b"\\" if p == "\\\\" else bytes([int(p[2:], 16)]) if p.startswith("\\x") else os.fsencode(p)
        for p in parts
    )


_SURROGATE = re.compile("[\udc80-\udcff]")


class ImageFolderSource(Source):
    """Image files under a folder; ``root/<class>/x.jpg`` gets the label ``<class>``.

    Ids are the paths relative to the folder (``/``-separated; a name that is not UTF-8
    is escaped by :func:`id_from_name`); files directly in the folder are unlabelled.
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
        ids = tuple(id_from_name(f) for f in files)
        labels = tuple(i.split("/", 1)[0] if "/" in i else None for i in ids)
        digests = tuple(content_sha(self._bytes(i)) for i in range(len(files)))
        return Listing(ids, digests, labels, (None,) * len(files))

    def read(self, index: int) -> bytes:
        return (self.path / self._files[index]).read_bytes()

    def _bytes(self, index: int) -> bytes:
        try:
            return self.read(index)
        except OSError as exc:  # named by the item: a failed read may carry no file name
            raise UserInputError(
                f"{self.describe(index)}: cannot read ({exc.strerror or exc}); "
                "fix its permissions or remove it"
            ) from None

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
            tuple(content_sha(t) for t in texts),
            tuple(labels[:n]) if labels is not None else (None,) * n,
            tuple(splits[:n]) if splits is not None else (None,) * n,
        )

    def _read_text(self) -> str:
        """The file as text: UTF-8, a leading byte-order mark removed, line ends untouched."""
        try:
            return self.path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = exc.object.count(b"\n", 0, exc.start) + 1
            raise UserInputError(
                f"{self.path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                "re-save it as UTF-8"
            ) from None
        except OSError as exc:
            raise UserInputError(f"{self.path}: cannot read ({exc.strerror or exc})") from None


def split_lines(text: str) -> list[str]:
    r"""Lines split only at ``\n`` and ``\r\n`` (not ``str.splitlines``' other breaks).

    A final line end does not start another line; every other character, a lone ``\r``,
    U+2028 or a form feed included, stays in its line.

    Examples
    --------
    >>> split_lines("a\r\nb\u2028c\n\nd\n")
    ['a', 'b\u2028c', '', 'd']
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class TextLinesSource(_TextSource):
    """A .txt file with one text per line; ids are line numbers from 0.

    Lines end at ``\n`` or ``\r\n`` only (see :func:`split_lines`), so ids do not move
    when a text holds U+2028 or a form feed. An empty line is an item (a bad one).
    """

    def describe(self, index: int) -> str:
        return f"{self.path}:{index + 1}"

    def scan(self) -> Listing:
        return self._listing(split_lines(self._read_text()))


class TableSource(_TextSource):
    """A .csv/.tsv or .jsonl file with a text column, and optional label, id, split columns.

    CSV is read by the ``csv`` module (quoted fields keep their line breaks); JSONL holds
    one JSON object per ``\\n``-ended line. Without an ``id`` column, ids are record
    numbers from 0 (the header and blank lines not counted).
    """

    def __init__(self, path: Path, limit=None, *, column=None, label_column=None, id_column=None):
        super().__init__(path, limit)
        self.column, self.label_column, self.id_column = column, label_column, id_column

    def describe(self, index: int) -> str:
        return f"{self.path}: item {self._ids[index]!r}"

    def _column(self, columns, rows, name, default: str, option: str) -> list | None:
        name = name or (default if default in columns else None)
        check_column(self.path, columns, name, option)
        return None if name is None else [row.get(name) for _, row in rows]

    def scan(self) -> Listing:
        text, suffix = self._read_text(), self.path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            columns, rows = csv_rows(self.path, text, "\t" if suffix == ".tsv" else ",")
        else:
            columns, rows = jsonl_rows(self.path, text)
        rows = rows[: self.limit]
        texts = self._column(columns, rows, self.column or "text", "text", "--text-column")
        if texts is None:
            raise UserInputError(f"{self.path}: no texts found; pass a file with a header row")
        where = [w for w, _ in rows]
        labels = self._column(columns, rows, self.label_column, "label", "--label-column")
        if labels is not None:
            labels = [label_value(v, w) for v, w in zip(labels, where)]
            check_classes(len(set(labels) - {None}), str(self.path))
        ids = self._column(columns, rows, self.id_column, "id", "--id-column")
        splits = self._column(columns, rows, None, "split", "splits")
        return self._listing(
            [text_value(t, w) for t, w in zip(texts, where)],
            ids=None if ids is None else [id_value(v, w) for v, w in zip(ids, where)],
            labels=labels,
            splits=None if splits is None else [split_value(v, w) for v, w in zip(splits, where)],
        )


class ArraySource(Source):
    """Rows of a .npy array ``(N, ...)``; ids are row numbers; labels from ``labels.npy``.

    Integer labels below 0 mean unlabelled; a uint8 ``(N, H, W[, 3])`` array is a stack of
    images when the model's preprocessing is an image spec.
    """

    kind = "array"

    def __init__(self, path: Path, limit=None, *, labels: str | Path | None = None):
        super().__init__(path, limit)
        self.labels_path = None if labels is None else Path(labels)
        self.array = load_npy(path, mmap_mode="r")
        if self.array.ndim < 1 or len(self.array) == 0:
            raise UserInputError(f"{path}: empty array; pass an (N, ...) array with N > 0")
        if self.array.dtype.kind not in "biuf":
            raise UserInputError(
                f"{path}: an array of {self.array.dtype} values; pass numbers "
                "(bool, int, uint or float)"
            )

    def __getstate__(self) -> dict:  # a Ray actor maps the file again instead of a copy
        return {k: v for k, v in self.__dict__.items() if k != "array"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.array = load_npy(self.path, mmap_mode="r")

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def scan(self) -> Listing:
        n = len(self.array) if self.limit is None else min(self.limit, len(self.array))
        digests = tuple(content_sha(self.array[i]) for i in range(n))
        labels, order = self._labels(n)
        return Listing(tuple(str(i) for i in range(n)), digests, labels, (None,) * n, order)

    def _labels(self, n: int) -> tuple[tuple[str | None, ...], tuple[str, ...]]:
        """Label names per row and their index order (numeric for integer labels)."""
        if self.labels_path is None:
            return (None,) * n, ()
        values = load_npy(self.labels_path, "a .npy array of labels")
        if values.shape[:1] != self.array.shape[:1] or values.ndim != 1:
            raise UserInputError(
                f"{self.labels_path}: labels have shape {values.shape} but {self.path} has "
                f"{len(self.array)} rows; pass one label per row"
            )
        names, order = array_labels(values, str(self.labels_path))
        return tuple(names[:n]), order

    def read(self, index: int) -> np.ndarray:
        return np.asarray(self.array[index])
