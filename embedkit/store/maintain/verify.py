"""The full check of a store: everything checked on open, then every byte of every shard.

    embedkit store verify feats.h5

:func:`verify_store` lists every problem (one line each): the checks on open, full reads
of every shard, content hashes against file names, every file's checksum, the index
against its newest version, and debris. It reads the store only; nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError, first_line
from embedkit.store import format as S
from embedkit.store.files.columns import content_matches
from embedkit.store.files.integrity import (
    check_not_orphaned,
    debris,
    file_problem,
    folder_files,
    marked_shards,
    view_is_current,
)
from embedkit.store.files.shards import open_shard, shard_content_name
from embedkit.store.read.checks import index_problems
from embedkit.store.read.rowchecks import row_problems
from embedkit.store.read.state import open_index, read_state

_BLOCK_BYTES = 64 << 20  # feature bytes read per step


def verify_store(path) -> list[str]:
    """Check a store in full and return its problems, one line each (empty: clean).

    Parameters
    ----------
    path : str or Path
        The store's index file (``feats.h5``; its shards are in ``feats.h5.d/``).

    Returns
    -------
    list of str
        One line per problem, naming the file and the field; empty when the store is
        sound. Nothing is written to the store.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.rows import from_arrays
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> from_arrays(path, np.ones((4, 2), np.float32)).close()
    >>> verify_store(path)
    []
    >>> import h5py
    >>> with h5py.File(path, "r+") as f:
    ...     f.attrs["taps"] = "[{"
    >>> verify_store(path)[0]  # doctest: +ELLIPSIS
    "...f.h5: attribute 'taps' is not valid JSON (...); re-run extract or restore the store"
    """
    path = Path(path)
    try:
        if not path.exists():
            check_not_orphaned(path)
            return [f"{path}: no such store; give the .h5 index file written by embedkit extract"]
        f = open_index(path)
    except StoreError as exc:
        return [str(exc)]
    sums = _index_checksums(path)  # listed after the structural problems they explain
    try:
        with f:
            problems, state = _structure(path, f)
    except Exception as exc:  # noqa: BLE001 - HDF5 reads of damaged bytes fail in many ways
        # the checksums name the damaged file; the failed read comes after them
        failed = f"{path}: a read failed ({first_line(exc, 100)}); {S.RESTORE}"
        return sums + _file_checksums(path) + [failed]
    if state is None:
        return problems + sums + _file_checksums(path) + _debris(path)
    marked = [
        f"{path}: shard {name} is damaged and marked for recompute; re-run `embedkit extract "
        f"MODEL SOURCE --out {path}` to recompute its rows"
        for name in marked_shards(state.attrs)
    ]
    return marked + problems + sums + _file_checksums(path, state) + _debris(path)


def _structure(path: Path, f: h5py.File):
    """``(problems, state)`` of everything but the checksums (state None: unreadable)."""
    problems = list(index_problems(f, path))
    if problems:
        return problems, None
    try:
        state = read_state(f, path)
    except (StoreError, OSError, ValueError, KeyError) as exc:
        return [str(exc).splitlines()[0]], None
    return list(row_problems(path, state)) or _deep(path, state), state  # full reads if sound


def _index_checksums(path: Path) -> list[str]:
    """The CRC-32 of the index and of every version, and the index equal to the newest."""
    numbers = S.versions(path)
    found = [file_problem(path, path, "the index file")]
    found += [file_problem(path, S.version_path(path, n), f"version {n}") for n in numbers]
    problems = [p for p in found if p]
    if not problems and numbers and not view_is_current(path):
        problems.append(
            f"{path}: the index is not a copy of its newest version {numbers[-1]} (a writer "
            f"was killed between the two); run `embedkit store verify {path} --repair`"
        )
    return problems


def _file_checksums(path: Path, state=None) -> list[str]:
    """The CRC-32 of every shard and column file the index names (state None: every one
    in the folder). Files only older versions name are history: a vacuum drops them."""
    if state is None:
        found = [(p, "shard") for p in folder_files(S.shard_dir(path))]
        found += [(p, "column file") for p in folder_files(S.column_dir(path))]
    else:
        found = [(S.shard_path(path, n), "shard") for n in state.shards]
        found += [(S.column_dir(path) / n, "column file") for n, _ in state.pieces or []]
    return [p for p in (file_problem(path, f, what) for f, what in found if f.is_file()) if p]


def _deep(path: Path, state) -> list[str]:
    """Full reads of every shard, and every file's content hash against its name."""
    problems = []
    for name in state.shards:
        where = f"{path}: shard {name}"
        with open_shard(S.shard_path(path, name)) as f:
            problems += _read_all(where, f, state)
            if S.CONTENT_NAME.fullmatch(name) and not problems and shard_content_name(f) != name:
                problems.append(
                    f"{where}: its content does not hash to its name (changed or swapped "
                    f"in from elsewhere); {S.RESTORE}"
                )
    for name, _rows in dict(state.pieces or []).items():
        if not content_matches(S.column_dir(path) / name):
            problems.append(
                f"{path}: column file {name} does not hash to its name (changed or swapped in "
                f"from elsewhere); {S.RESTORE}"
            )
    return problems


def _read_all(where: str, f: h5py.File, state) -> list[str]:
    """Read every dataset of one shard; feature values must be finite."""
    problems, columns = [], {}
    for name in (S.IDS, S.DIGESTS, S.LABELS, S.LABEL_NAMES, S.SPLIT):
        try:
            columns[name] = f[name][...]
        except Exception as exc:  # noqa: BLE001 - any read failure is a finding
            problems.append(
                f"{where}: /{name} cannot be read ({first_line(exc, 100)}); {S.RESTORE}"
            )
    rows = len(columns.get(S.LABELS, ()))
    for name in (S.IDS, S.DIGESTS, S.SPLIT):
        if name in columns and columns[name].shape != (rows,):
            problems.append(
                f"{where}: /{name} has {len(columns[name])} rows, /labels {rows}; {S.RESTORE}"
            )
    codes = columns.get(S.LABELS, np.zeros(0, np.int64))
    if len(codes) and (codes.min() < -1 or codes.max() >= len(columns.get(S.LABEL_NAMES, ()))):
        problems.append(f"{where}: /labels holds an index beyond its /label_names; {S.RESTORE}")
    for tap in state.fingerprint.tap_infos:
        name = f"{S.FEATURES}/{tap.name}"
        ds = f[name]
        if ds.dtype != np.dtype(tap.dtype):
            problems.append(f"{where}: /{name} is {ds.dtype}, the store records {tap.dtype}")
            continue
        step = max(1, _BLOCK_BYTES // max(1, ds.dtype.itemsize * int(np.prod(tap.shape))))
        for lo in range(0, ds.shape[0], step):
            try:
                block = ds[lo : lo + step]  # (step, *shape)
            except Exception as exc:  # noqa: BLE001
                why = f"cannot be read ({first_line(exc, 100)})"
                problems.append(f"{where}: /{name} rows {lo}+ {why}")
                break
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                row = lo + int(np.flatnonzero(bad)[0])
                problems.append(
                    f"{where}: /{name} row {row} holds NaN or infinite values; {S.RESTORE}"
                )
                break
    return problems


def _debris(path: Path) -> list[str]:
    """Temporary files a killed writer left (old versions' files are not debris: `store
    vacuum` removes those)."""
    return [
        f"{p}: debris (a temporary file a killed writer left); the next write removes it"
        for p in debris(path)
    ]
