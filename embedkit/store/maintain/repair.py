"""``embedkit store verify feats.h5 --repair``: put back what can be put back, mark the rest.

Under the writer lock, in order: a damaged or missing index is kept as ``.damaged`` and
restored (:mod:`embedkit.store.maintain.recover`); an index a version behind, or its own
version file, is brought level; damaged column files take labels and split from the
shards; an index naming a moved folder is rewritten; damaged shards are **marked** for
recomputation by the next extract; debris goes. Each change is a new version (operation
``repair``); docs/store-format.md, "Checksums, versions, recover and repair".
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError
from embedkit.files import atomic_file
from embedkit.store import format as S
from embedkit.store.files.columns import content_matches
from embedkit.store.files.integrity import RECOMPUTE, checksum_problem, marked_shards
from embedkit.store.files.shards import open_shard, row_labels, shard_content_name
from embedkit.store.maintain.recover import recover_locked
from embedkit.store.read.state import State, load_state
from embedkit.store.txn.begin import clean_debris
from embedkit.store.txn.index import write_index, write_view
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock


def repair_store(path, *, timeout: float = LOCK_TIMEOUT) -> list[str]:
    """Repair what ``store verify`` found; returns one line per thing done.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.rows import from_arrays
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, np.ones((4, 2), np.float32)).close()
    >>> os.remove(os.path.join(path + ".d", "versions", "00000001.h5"))
    >>> repair_store(path)  # doctest: +ELLIPSIS
    ['...f.h5: version 1 written again from the index']
    """
    path = Path(path)
    if not path.exists() and not S.sidecar(path).is_dir():
        raise StoreError(f"{path}: no such store; give the .h5 index file of a store")
    done: list[str] = []
    with WriterLock(path, timeout=timeout, what="repairing"):
        state = _index(path, done)
        state = _version(path, state, done)
        state = _moved(path, state, done)
        state = _columns(path, state, done)
        _shards(path, state, done)
        removed = clean_debris(path)
        if removed:
            done.append(f"{path}: removed {len(removed)} debris file(s)")
    return done


def _index(path: Path, done: list[str]) -> State:
    problem = checksum_problem(path) if path.exists() else "it is missing"
    if problem is None:
        try:
            return load_state(path)
        except StoreError as exc:
            problem = str(exc).split(": ", 1)[-1]
    if path.exists():
        os.replace(path, f"{path}.damaged")
        done.append(f"{path}: the index ({problem}) moved to {path}.damaged")
    done.append(recover_locked(path))
    return load_state(path)


def _version(path: Path, state: State, done: list[str]) -> State:
    """The index and its newest version agree: an index left a version behind is brought
    forward; a missing or damaged file of the index's own version is written again."""
    number, newest = int(state.attrs.get("version", 0)), max(S.versions(path), default=0)
    if newest > number and checksum_problem(S.version_path(path, newest)) is None:
        write_view(path, newest)
        done.append(f"{path}: the index was version {number}, behind {newest}; replaced by it")
        return load_state(path)
    own = S.version_path(path, number)
    intact = own.is_file() and not checksum_problem(own) and filecmp.cmp(path, own, shallow=False)
    if number and not intact:
        own.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(own) as tmp:
            shutil.copyfile(path, tmp)
        done.append(f"{path}: version {number} written again from the index")
    return state


def _moved(path: Path, state: State, done: list[str]) -> State:
    """An index whose virtual datasets name another folder (the store was moved) is
    rewritten, so plain h5py reads the rows again."""
    with h5py.File(path, "r") as f:
        ds = f[S.IDS]
        sources = ds.virtual_sources() if ds.is_virtual else []
    folder = f"{S.sidecar(path).name}/"
    if all(m.file_name.startswith(folder) for m in sources):
        return state
    write_index(path, state, base=state, operation="repair")
    done.append(f"{path}: the index named the folder it was moved from; rewritten")
    return load_state(path)


def _columns(path: Path, state: State, done: list[str]) -> State:
    """Rows of damaged column files take their labels and split from the shards."""
    lo, rows = 0, []
    for name, n in state.pieces or []:
        file = S.column_dir(path) / name
        if checksum_problem(file) is not None or not content_matches(file):
            rows.append((lo, lo + n, name))
        lo += n
    if not rows:
        return state
    labels, split = state.labels.copy(), state.split.copy()
    shard_of, src_of = state.rows_of()
    names = list(state.label_names)
    for k, shard in enumerate(state.shards):
        with open_shard(S.shard_path(path, shard)) as f:
            own, splits = row_labels(f), f[S.SPLIT][...].astype("S8")
        for a, b, _ in rows:
            for row in (np.flatnonzero(shard_of[a:b] == k) + a).tolist():
                label = own[src_of[row]]
                if label and label not in names:
                    names.append(label)
                labels[row] = names.index(label) if label else -1
                split[row] = splits[src_of[row]]
    new = replace(state, labels=labels, split=split, label_names=names, pieces=None)
    write_index(path, new, base=state, operation="repair", new_columns=True)
    for a, b, name in rows:
        done.append(
            f"{path}: column file {name} damaged: labels and split of rows {a}-{b - 1} taken "
            "from the shards (as extracted; re-run `embedkit split` if you had changed them)"
        )
    return load_state(path)


def _shards(path: Path, state: State, done: list[str]) -> None:
    old = marked_shards(state.attrs)
    marked = [n for n in state.shards if n in old or _damaged(S.shard_path(path, n))]
    if set(marked) == set(old):  # old marks of shards no longer in the store go too
        return
    new = replace(state, attrs={**state.attrs, RECOMPUTE: json.dumps(marked)})
    write_index(path, new, base=state, operation="repair")
    seg = state.segments
    rows = {n: int(seg[seg[:, 0] == k, 3].sum()) for k, n in enumerate(state.shards)}
    for name in marked:
        done.append(
            f"{path}: shard {name} damaged ({rows[name]} rows): marked; re-run `embedkit extract "
            f"MODEL SOURCE --out {path}` to recompute its rows"
        )


def _damaged(file: Path) -> bool:
    if checksum_problem(file) is not None:
        return True
    try:
        with open_shard(file) as f:
            return bool(S.CONTENT_NAME.fullmatch(file.name)) and shard_content_name(f) != file.name
    except (StoreError, OSError, KeyError, ValueError):
        return True
