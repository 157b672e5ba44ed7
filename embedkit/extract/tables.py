"""Reading table sources, each format by its own rules: CSV/TSV with ``csv``, JSONL with ``json``.

The text arrives decoded (UTF-8, byte-order mark removed). Each record comes back with
where it starts (``path:line``), so that an error names it.

    embedkit extract minilm.onnx reviews.csv --out feats.h5 --text-column body
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import UserInputError
from embedkit.rows.labels import check_text, label_value
from embedkit.store.format import SPLITS

Rows = list[tuple[str, dict[str, Any]]]  # (where, record) in file order


def csv_rows(path: Path, text: str, delimiter: str = ",") -> tuple[list[str], Rows]:
    """The header and the records of a CSV/TSV text; quoted fields keep CR and LF.

    Examples
    --------
    >>> columns, rows = csv_rows(Path("t.csv"), 'text,label\\r\\n"one\\ntwo",x\\r\\n')
    >>> columns, rows
    (['text', 'label'], [('t.csv:2', {'text': 'one\\ntwo', 'label': 'x'})])
    """
    # strict: an unclosed quote or text after a closing quote is an error, not a guess
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: Rows = []
    line = 1
    try:
        header = next(reader, [])
        duplicated = [c for c in dict.fromkeys(header) if header.count(c) > 1]
        if duplicated:
            raise UserInputError(
                f"{path}: column {duplicated[0]!r} appears twice in the header; rename one"
            )
        line = reader.line_num + 1
        for record in reader:
            where, line = f"{path}:{line}", reader.line_num + 1
            if not record:
                continue  # a blank line
            if len(record) > len(header):
                raise UserInputError(
                    f"{where}: {len(record)} fields but the header has {len(header)}; "
                    "quote fields that hold the delimiter"
                )
            rows.append((where, dict(zip(header, record))))
    except csv.Error as exc:
        raise UserInputError(f"{path}:{line}: not valid CSV ({exc})") from None
    return header, rows


def jsonl_rows(path: Path, text: str) -> tuple[list[str], Rows]:
    """The keys (in order of first appearance) and the objects of a JSONL text.

    Lines end at ``\\n`` only: U+2028 and other characters ``str.splitlines`` would break
    at are valid inside JSON strings. Blank lines are skipped.

    Examples
    --------
    >>> columns, rows = jsonl_rows(Path("t.jsonl"), '{"text": "a\\u2028b"}\\r\\n\\n{"label": 1}\\n')
    >>> columns, rows
    (['text', 'label'], [('t.jsonl:1', {'text': 'a\\u2028b'}), ('t.jsonl:3', {'label': 1})])
    """
    rows: Rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{where}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise UserInputError(f"{where}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise UserInputError(f"{where}: expected a JSON object per line")
        rows.append((where, row))
    return list(dict.fromkeys(key for _, row in rows for key in row)), rows


def text_value(value: object, where: str) -> str:
    """The text of a record: a string (a missing one is empty, refused later as empty text)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserInputError(
            f"{where}: the text is {type(value).__name__} {value!r:.40}, not a string; "
            "quote it in the JSON"
        )
    return check_text(value, where, "text")


def id_value(value: object, where: str) -> str:
    """The id of a record: a string or an integer, never empty."""
    item_id = label_value(value, where, "id")
    if item_id is None:
        raise UserInputError(f"{where}: empty id; give every row an id or drop the id column")
    return item_id


def split_value(value: object, where: str) -> str | None:
    """The split of a record: train, val, test, or missing."""
    split = label_value(value, where, "split")
    if split is not None and split not in SPLITS:
        raise UserInputError(
            f"{where}: split {split!r} is not one of: {', '.join(SPLITS)} (or empty)"
        )
    return split


def check_column(path, columns, name: str | None, option: str) -> None:
    """Refuse a column ``name`` (given by ``option``) that ``columns`` does not hold."""
    if name is not None and name not in columns:
        raise UserInputError(
            f"{path}: no column {name!r} for {option}; columns: {', '.join(columns)}"
        )


def load_npy(path, what: str = "a .npy array", mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` of one array, refusing in one line what is not one (``.npz`` or zip
    archives named ``.npy``, empty or truncated files, pickled objects)."""
    try:
        value = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except EOFError:
        raise UserInputError(f"{path}: an empty file, not {what}; save it with np.save") from None
    except (ValueError, OSError) as exc:
        raise UserInputError(f"{path}: not {what} ({exc}); save it with np.save") from None
    if not isinstance(value, np.ndarray):  # np.load opens any zip as an .npz archive
        value.close()
        raise UserInputError(
            f"{path}: a .npz or zip archive, not {what}; save one array with np.save"
        )
    return value
