"""Import labels into a store by id: a CSV (``id,label``) or a Label Studio JSON export.

Only the label column changes; features, ids and splits stay as they are. The whole file
is checked before anything is written: an id the store does not hold, an id given two
different labels, or (without ``new_class``) a class the store has never seen is refused
with one line naming the file's row. Each import is one commit of the store, recorded in
its provenance (``runs``: time, rows changed) with the file's name and sha256.

    embedkit label feats.h5 labels.csv
    embedkit label feats.h5 label-studio-export.json --new-class

Examples
--------
>>> import numpy as np, tempfile, os
>>> from embedkit.rows import from_arrays
>>> d = tempfile.mkdtemp(); path = os.path.join(d, "f.h5")
>>> X = np.eye(4, dtype="float32"); y = np.array([0, 1, -1, -1])
>>> from_arrays(path, X, y, label_names=["cat", "dog"]).close()
>>> _ = open(os.path.join(d, "l.csv"), "w").write("id,label\\n2,dog\\n3,cat\\n")
>>> import_labels(path, os.path.join(d, "l.csv")).changed
2
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from embedkit.errors import UserInputError

LABEL_COLUMNS = ("label", "class", "choice")


@dataclass(frozen=True)
class LabelImport:
    """What one import did."""

    store: str
    file: str
    sha256: str  # of the labels file
    rows: int  # labels read from the file
    changed: int  # store rows whose label changed
    new_classes: tuple[str, ...]  # class names the store did not have


def _read_csv(path: Path) -> list[tuple[str, str, str]]:
    """``(where, id, label)`` of each labelled row (an empty label: nothing to import)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserInputError(f"{path}: not a readable UTF-8 CSV ({exc})") from None
    if not rows:
        raise UserInputError(f"{path}: empty; write a header id,label and one row per item")
    header = [h.strip().lower() for h in rows[0]]
    id_col = header.index("id") if "id" in header else None
    label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    if id_col is None or label_col is None:
        raise UserInputError(
            f"{path}: the header {rows[0]!r} needs an id column and a label column "
            f"({' or '.join(LABEL_COLUMNS)}), e.g. id,label"
        )
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(id_col, label_col):
            raise UserInputError(f"{path}:{line}: {len(row)} fields; the header has {len(header)}")
        label = row[label_col].strip()
        if label:
            out.append((f"{path}:{line}", row[id_col].strip(), label))
    return out


def _read_label_studio(path: Path) -> list[tuple[str, str, str]]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(tasks, list):
        raise UserInputError(f"{path}: a Label Studio export is a JSON list of tasks")
    out = []
    for n, task in enumerate(tasks):
        where = f"{path}: task {n}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or "id" not in data:
            raise UserInputError(f"{where}: no data.id; export tasks made by embedkit select")
        choices = [
            c
            for ann in task.get("annotations") or []
            if not ann.get("was_cancelled")
            for res in ann.get("result") or []
            for c in (res.get("value") or {}).get("choices") or []
        ]
        if len(set(choices)) > 1:
            raise UserInputError(f"{where}: id {data['id']}: annotations disagree: {choices}")
        if choices:
            out.append((where, str(data["id"]), str(choices[-1])))
    return out


def import_labels(
    store: str | Path, labels_file: str | Path, *, new_class: bool = False, timeout: float = 10.0
) -> LabelImport:
    """Write the labels of ``labels_file`` into ``store`` by id (see module docstring).

    Parameters
    ----------
    store : str or Path
        The feature store (changed in place, one atomic commit).
    labels_file : str or Path
        A CSV with ``id`` and ``label`` columns, or Label Studio's JSON export of the
        tasks ``embedkit select --label-studio`` wrote.
    new_class : bool
        Accept class names the store does not have yet (appended to its classes).
    timeout : float
        Seconds to wait for another writer of the store.
    """
    from embedkit.store import FeatureStore, StoreWriter

    path = Path(labels_file)
    if not path.is_file():
        raise UserInputError(f"{path}: no such labels file; pass a CSV (id,label) or a JSON export")
    entries = (_read_label_studio if path.suffix.lower() == ".json" else _read_csv)(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with FeatureStore(store) as fs:
        fingerprint, names = fs.fingerprint, list(fs.label_names)
        known = set(fs.ids().tolist())
    seen: dict[str, tuple[str, str]] = {}
    fresh: list[str] = []
    for where, item, label in entries:
        if item not in known:
            raise UserInputError(f"{where}: id {item!r} is not in {store}; check the id column")
        if item in seen and seen[item][1] != label:
            raise UserInputError(
                f"{where}: id {item!r} is labelled {label!r} here but {seen[item][1]!r} at "
                f"{seen[item][0]}; keep one"
            )
        if label not in names and label not in fresh:
            if not new_class:
                raise UserInputError(
                    f"{where}: class {label!r} is not one of the store's classes "
                    f"({', '.join(names[:12])}{', ...' if len(names) > 12 else ''}); fix the "
                    "label, or pass --new-class to add it"
                )
            fresh.append(label)
        seen[item] = (where, label)
    record = {"command": "label", "labels_file": str(labels_file), "labels_sha256": digest}
    with StoreWriter(store, fingerprint, provenance=record, label_names=names + fresh,
                     timeout=timeout, operation="label") as writer:  # fmt: skip
        writer.relabel(list(seen), [label for _, label in seen.values()])
        summary = writer.commit()
    return LabelImport(str(store), str(labels_file), digest, len(entries),
                       summary.n_relabelled, tuple(fresh))  # fmt: skip
