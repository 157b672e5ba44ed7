"""A store's history and its clean-up: ``embedkit store log`` and ``embedkit store vacuum``.

Commits never delete a file any version names; old versions and the files only they name
stay until an explicit vacuum (docs/store-format.md, "Versions").

    embedkit store log feats.h5                 # number, time, operation, rows, labels changed
    embedkit store vacuum feats.h5 --keep 3     # lists what would go; --yes removes it
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py

from embedkit.errors import StoreError, UserInputError, first_line
from embedkit.files import fsync_path
from embedkit.store import format as S
from embedkit.store.files.integrity import folder_files
from embedkit.store.read.state import read_state
from embedkit.store.txn.begin import prepare
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock


def store_log(store) -> list[dict]:
    """One dict per version of ``store``, oldest first: what each commit did.

    Keys: ``version``, ``committed`` (UTC time), ``operation`` (``extract``, ``label``,
    ``split``, ``compact``, ``commit``, ``recover``, ``repair``, ``upgrade``), ``rows``
    (after it), ``added``, ``replaced``, ``labels_changed`` (rows whose class changed) and
    ``split_changed`` (rows whose split changed).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.rows import from_arrays
    >>> from embedkit.store import set_splits
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, np.ones((4, 2), np.float32), [0, 1, 0, 1]).close()
    >>> set_splits(path, ["train", "train", "test", "test"])
    >>> [(v["version"], v["operation"], v["rows"], v["split_changed"]) for v in store_log(path)]
    [(1, 'extract', 4, 0), (2, 'split', 4, 4)]
    """
    store = Path(store)
    if not store.exists() and not S.versions(store):
        raise StoreError(f"{store}: no such store; create it with `embedkit extract`")
    out = []
    for number in S.versions(store):
        try:
            with h5py.File(S.version_path(store, number), "r") as f:
                attrs = {k: S.as_text(v) for k, v in f.attrs.items()}
        except OSError as exc:
            why = f"is not readable ({first_line(exc, 100)})"
            raise StoreError(
                f"{store}: version {number} {why}; run `embedkit store verify {store} --repair`"
            ) from None
        change = json.loads(attrs.get("change", "{}"))
        out.append(
            {
                "version": number,
                "committed": attrs.get("committed", ""),
                "operation": attrs.get("operation", ""),
                "rows": int(attrs.get("n_items", 0)),
                **{k: int(change.get(k, 0)) for k in CHANGES},
            }
        )
    return out


CHANGES = ("added", "replaced", "labels_changed", "split_changed")


@dataclass(frozen=True)
class VacuumPlan:
    """What :func:`vacuum` removes (or removed): paths and their bytes."""

    store: str
    kept: tuple[int, ...]  # the versions kept
    paths: tuple[Path, ...]
    nbytes: int
    done: bool  # False: a dry run, nothing removed

    def __str__(self) -> str:
        verb = "removed" if self.done else "would remove"
        first, last = self.kept[0], self.kept[-1]
        kept = f"versions {first}-{last}" if len(self.kept) > 1 else f"version {first}"
        return (
            f"{self.store}: keeping {kept}; {verb} {len(self.paths)} file(s), "
            f"{self.nbytes / 1e6:.1f} MB"
            + ("" if self.done or not self.paths else "; pass --yes to remove them")
        )


def vacuum(store, *, keep: int = 1, yes: bool = False, timeout: float = LOCK_TIMEOUT):
    """Remove the versions older than the newest ``keep``, and files no kept version names.

    Without ``yes`` nothing is removed: the returned plan lists what would go. A reader
    that opened one of the removed versions may then fail with a missing shard (re-open
    it); readers of the kept versions are unaffected.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.rows import from_arrays
    >>> from embedkit.store import set_splits
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, np.ones((4, 2), np.float32), [0, 1, 0, 1]).close()
    >>> set_splits(path, ["train", "train", "test", "test"])
    >>> [p.name for p in vacuum(path).paths]  # doctest: +ELLIPSIS
    ['00000001.h5', '...h5']
    >>> vacuum(path, yes=True).done, [v["version"] for v in store_log(path)]
    (True, [2])
    """
    if int(keep) < 1:
        raise UserInputError(f"--keep {keep}: keep at least the newest version (1 or more)")
    store = Path(store)
    with WriterLock(store, timeout=timeout, what="vacuuming") as lock:
        prepare(store, lock, required=True)
        kept, paths = _beyond(store, int(keep))  # prepare() removed the debris
        nbytes = sum(p.stat().st_size for p in paths)
        if yes:
            for path in paths:
                path.unlink(missing_ok=True)
            for folder in {p.parent for p in paths} | {S.version_dir(store)}:
                if folder.is_dir():
                    fsync_path(folder)
    return VacuumPlan(str(store), tuple(kept), tuple(paths), nbytes, bool(yes))


def reclaimable(store) -> tuple[int, int]:
    """How many versions ``store`` has, and the bytes only older versions hold.

    Read-only and unlocked (a concurrent commit may change the answer); ``info`` prints it
    so that a store growing with old versions says how much ``store vacuum`` would free.
    """
    numbers = S.versions(Path(store))
    if not numbers:
        return 0, 0
    _, paths = _beyond(Path(store), 1)
    return len(numbers), sum(p.stat().st_size for p in paths if p.exists())


def _beyond(store: Path, keep: int) -> tuple[list[int], list[Path]]:
    """The newest ``keep`` version numbers, and the files only older versions need."""
    numbers = S.versions(store)
    kept, dropped = numbers[-keep:], numbers[:-keep]
    return kept, [S.version_path(store, n) for n in dropped] + unnamed_files(store, kept)


def unnamed_files(store, numbers: list[int] | None = None) -> list[Path]:
    """Shard and column files that none of the versions ``numbers`` (default: all) names.

    A commit killed after placing its shards leaves such files; vacuum removes them.
    """
    store = Path(store)
    shards, columns = set(), set()
    for number in S.versions(store) if numbers is None else numbers:
        with h5py.File(S.version_path(store, number), "r") as f:
            state = read_state(f, store)
        shards.update(state.shards)
        columns.update(name for name, _ in state.pieces or [])
    found = [p for p in folder_files(S.shard_dir(store)) if p.name not in shards]
    found += [p for p in folder_files(S.column_dir(store)) if p.name not in columns]
    return sorted(found)
