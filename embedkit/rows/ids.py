"""Files of item ids: what ``embedkit train/bench ... --exclude FILE`` leaves out.

embedkit audit feats.h5 --out audit/
embedkit bench feats.h5 --exclude audit/suspects.csv --out bench-clean/
"""

from __future__ import annotations

import csv
from pathlib import Path

from embedkit.errors import UserInputError


def read_ids_file(path: str | Path) -> set[str]:
    """Return the set of ids listed in ``path``.

    Two formats are accepted: a plain file with one id per line (blank lines and
    lines starting with ``#`` are skipped), or a CSV/TSV whose header has an ``id``
    column, such as the audit's ``suspects.csv``, ``outliers.csv`` or a hand-edited
    copy of them.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "ids.txt"), "w").write("img_3\\n# a comment\\n\\nimg_7\\n")
    >>> sorted(read_ids_file(os.path.join(d, "ids.txt")))
    ['img_3', 'img_7']
    >>> _ = open(os.path.join(d, "s.csv"), "w").write("id,given_label\\nimg_1,cat\\n")
    >>> read_ids_file(os.path.join(d, "s.csv"))
    {'img_1'}
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"exclude file {str(path)!r} does not exist; pass a file of ids")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserInputError(
            f"exclude file {str(path)!r} is not UTF-8 text (byte {exc.start}); pass a text file "
            "of ids, one a line, or a CSV with an id column"
        ) from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return set()
    header = lines[0]
    delimiter = "\t" if "\t" in header else ","
    fields = [f.strip().strip('"') for f in header.split(delimiter)]
    if "id" in fields:
        rows = csv.DictReader(lines, delimiter=delimiter)
        return {row["id"].strip() for row in rows if row.get("id") and row["id"].strip()}
    if len(fields) > 1:
        raise UserInputError(
            f"exclude file {str(path)!r} looks like a table but has no 'id' column "
            f"(columns: {', '.join(fields)}); add an 'id' header or list one id per line"
        )
    return {line.strip() for line in lines if not line.lstrip().startswith("#")}


def check_known_ids(wanted: set[str], known, store: str | Path, source: str = "--exclude"):
    """Raise when ids in ``wanted`` are not among the ``known`` ids of ``store``.

    ``train`` and ``bench`` both refuse an exclude file with unknown ids: a typo or a
    file made for another store would otherwise exclude nothing, silently.

    Examples
    --------
    >>> check_known_ids({"a", "z"}, ["a", "b"], "feats.h5", "--exclude ids.txt")
    Traceback (most recent call last):
    ...
    embedkit.errors.UserInputError: --exclude ids.txt: 1 ids are not in feats.h5 (e.g. z); \
give ids from this store
    """
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise UserInputError(
            f"{source}: {len(unknown)} ids are not in {store} (e.g. "
            f"{', '.join(unknown[:3])}); give ids from this store"
        )
