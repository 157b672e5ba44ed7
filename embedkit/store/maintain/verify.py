"""The full check of a store: everything checked on open, then every byte of every shard.

    embedkit store verify feats.h5

:func:`verify_store` lists every problem it finds (one line each): the structural checks
of :mod:`embedkit.store.read.checks`, unique ids in schema-1 files (which have no id hashes),
then, shard by shard, every dataset read in full with its recorded shape and dtype, all
feature values finite, the shard's content hash equal to its content-derived file name,
the index's virtual datasets mapping the row map's segments, and no debris (temporary
files, shards no index names). It reads the store only; nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError
from embedkit.files import TEMP
from embedkit.store import format as S
from embedkit.store.files.columns import content_matches
from embedkit.store.files.integrity import (
    check_not_orphaned,
    copy_is_current,
    file_problem,
    marked_shards,
)
from embedkit.store.files.shards import missing_file, open_shard, shard_content_name
from embedkit.store.format import (
    CONTENT_NAME,
    RESTORE,
    SELF,
    backup_path,
    column_dir,
    shard_dir,
    shard_path,
    sidecar,
)
from embedkit.store.read.checks import index_problems
from embedkit.store.read.rowchecks import duplicate_ids, row_problems
from embedkit.store.read.state import read_state

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
    if not path.exists():
        try:
            check_not_orphaned(path)
        except StoreError as exc:
            return [str(exc)]
        return [f"{path}: no such store; give the .h5 index file written by embedkit extract"]
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        reason = "a folder" if path.is_dir() else str(exc).splitlines()[0][:120]
        return [f"{path}: not a readable HDF5 file ({reason})"]
    sums = _index_checksums(path)  # listed after the structural problems they explain
    try:
        with f:
            problems, state = _structure(path, f)
    except Exception as exc:  # noqa: BLE001 - HDF5 reads of damaged bytes fail in many ways
        # the checksums name the damaged file; the failed read comes after them
        files = _file_checksums(path, None)
        return sums + files + [f"{path}: a read failed ({_first(exc)}); {RESTORE}"]
    if state is None:
        return problems + sums + _file_checksums(path, None) + _debris(path, None)
    marked = [
        f"{path}: shard {name} is damaged and marked for recompute; re-run `embedkit extract "
        f"MODEL SOURCE --out {path}` to recompute its rows"
        for name in marked_shards(state.attrs)
    ]
    return marked + problems + sums + _file_checksums(path, state) + _debris(path, state)


def _structure(path: Path, f: h5py.File):
    """``(problems, state)`` of everything but the checksums (state None: unreadable)."""
    problems = list(index_problems(f, path))
    if problems:
        return problems, None
    try:
        state = read_state(f, path)
    except FileNotFoundError as exc:
        return [missing_file(path, Path(exc.filename))], None
    except (StoreError, OSError, ValueError, KeyError) as exc:
        return [str(exc).splitlines()[0]], None
    problems = list(row_problems(path, state, [f] if state.self_contained else None))
    if not problems:
        problems += _unhashed_ids(path, state, f) + _deep(path, state, f)
    return problems, state


def _index_checksums(path: Path) -> list[str]:
    """The index's CRC-32, and its copy in the folder (present, intact, current)."""
    problems = [p for p in [file_problem(path, path, "the index file")] if p]
    backup = backup_path(path)
    if backup.is_file():
        problem = file_problem(path, backup, "the index's copy")
        if problem is None and not problems and not copy_is_current(path):
            problem = (
                f"{path}: the index's copy {backup} is older than the index; "
                f"run `embedkit store verify {path} --repair`"
            )
        problems += [problem] if problem else []
    return problems


def _file_checksums(path: Path, state) -> list[str]:
    """The CRC-32 of every shard and column file the index names (state None: every one
    in the folder)."""
    if state is None:
        found = [(p, "shard") for p in _listing(shard_dir(path))]
        found += [(p, "column file") for p in _listing(column_dir(path))]
        return [p for p in (file_problem(path, f, what) for f, what in found) if p]
    files = [(shard_path(path, n), "shard") for n in state.shards if n != SELF]
    files += [(column_dir(path) / n, "column file") for n, _ in state.pieces or []]
    return [p for p in (file_problem(path, f, what) for f, what in files if f.is_file()) if p]


def _deep(path: Path, state, index: h5py.File) -> list[str]:
    """Full reads of every shard, content names and the index's virtual datasets."""
    problems = []
    for name in state.shards:
        f = index if name == SELF else open_shard(shard_path(path, name))
        where = str(path) if name == SELF else f"{path}: shard {name}"
        try:
            problems += _read_all(where, f, state)
            if CONTENT_NAME.fullmatch(name) and not problems:
                if shard_content_name(f) != name:
                    problems.append(
                        f"{where}: its content does not hash to its name (changed or swapped "
                        f"in from elsewhere); {RESTORE}"
                    )
        finally:
            if f is not index:
                f.close()
    for name, _rows in dict(state.pieces or []).items():
        if not content_matches(column_dir(path) / name):
            problems.append(
                f"{path}: column file {name} does not hash to its name (changed or swapped in "
                f"from elsewhere); {RESTORE}"
            )
    if not state.self_contained:
        problems += _mapping(path, state, index)
    return problems


def _unhashed_ids(path: Path, state, index: h5py.File) -> list[str]:
    """Unique ids when a shard has no id hashes (a schema-1 file), from the ids themselves."""
    handles = [index if n == SELF else open_shard(shard_path(path, n)) for n in state.shards]
    try:
        if state.n < 2 or all(S.ID_HASH in h for h in handles):
            return []  # checked on open
        ids = [h[S.IDS][...] for h in handles]
        keys = [ids[k][src : src + n] for k, src, _, n in state.segments.tolist()]
        keys = np.concatenate(keys).astype(bytes)
        if len(set(keys.tolist())) == len(keys):
            return []
        return list(duplicate_ids(str(path), state, handles, keys))
    finally:
        for h in handles:
            if h is not index:
                h.close()


def _read_all(where: str, f: h5py.File, state) -> list[str]:
    """Read every dataset of one shard; feature values must be finite."""
    problems, columns = [], {}
    for name in (S.IDS, S.DIGESTS, S.LABELS, S.LABEL_NAMES, S.SPLIT):
        try:
            columns[name] = f[name][...]
        except Exception as exc:  # noqa: BLE001 - any read failure is a finding
            problems.append(f"{where}: /{name} cannot be read ({_first(exc)}); {RESTORE}")
    rows = len(columns.get(S.LABELS, ()))
    for name in (S.IDS, S.DIGESTS, S.SPLIT):
        if name in columns and columns[name].shape != (rows,):
            problems.append(
                f"{where}: /{name} has {len(columns[name])} rows, /labels {rows}; {RESTORE}"
            )
    codes = columns.get(S.LABELS, np.zeros(0, np.int64))
    if len(codes) and (codes.min() < -1 or codes.max() >= len(columns.get(S.LABEL_NAMES, ()))):
        problems.append(f"{where}: /labels holds an index beyond its /label_names; {RESTORE}")
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
                problems.append(f"{where}: /{name} rows {lo}+ cannot be read ({_first(exc)})")
                break
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                row = lo + int(np.flatnonzero(bad)[0])
                problems.append(
                    f"{where}: /{name} row {row} holds NaN or infinite values; {RESTORE}"
                )
                break
    return problems


def _mapping(path: Path, state, index: h5py.File) -> list[str]:
    """Each virtual dataset of the index maps exactly the row map's segments."""
    folder = sidecar(path).name
    names = [S.IDS, S.DIGESTS] + [f"{S.FEATURES}/{t.name}" for t in state.fingerprint.tap_infos]
    expected = [
        (f"{folder}/shards/{state.shards[k]}", src, dst, n)
        for k, src, dst, n in state.segments.tolist()
    ]
    columns = [(S.LABELS, state.pieces), (S.SPLIT, state.pieces)] if state.pieces else []
    for name, pieces in [(n, None) for n in names] + columns:
        ds = index[name]
        if not ds.is_virtual:
            if state.n:
                return [f"{path}: /{name} is not a virtual dataset over the shards; {RESTORE}"]
            continue
        if pieces is not None:
            starts = np.cumsum([0] + [rows for _, rows in pieces]).tolist()
            expected = [
                (f"{folder}/columns/{piece}", 0, lo, rows)
                for (piece, rows), lo in zip(pieces, starts)
            ]
        got = []
        for m in ds.virtual_sources():
            lo, hi = m.vspace.get_select_bounds()
            slo, _shi = m.src_space.get_select_bounds()
            if m.dset_name.lstrip("/") != name:
                return [f"{path}: /{name} maps dataset {m.dset_name} of a shard; {RESTORE}"]
            got.append((_in_folder(m.file_name, folder), slo[0], lo[0], hi[0] - lo[0] + 1))
        if sorted(got, key=lambda g: g[2]) != expected:
            what = "/_store/columns" if pieces is not None else "/_store/rowmap"
            return [f"{path}: /{name}'s virtual mapping disagrees with {what}; {RESTORE}"]
    return []


def _debris(path: Path, state) -> list[str]:
    """Files a killed writer left: temporary files, shards that no index names."""
    found = list(path.parent.glob(f"{path.name}{TEMP}*"))
    if sidecar(path).is_dir():
        found += [p for p in sidecar(path).rglob(f"*{TEMP}*") if p.is_file()]
        if state is not None and shard_dir(path).is_dir():
            live = set(state.shards)
            found += [p for p in shard_dir(path).iterdir() if p.name not in live]
        if state is not None and column_dir(path).is_dir():
            live = {name for name, _ in state.pieces or []}
            found += [p for p in column_dir(path).iterdir() if p.name not in live]
    return [
        f"{p}: debris (a temporary file or a shard or column file no index names); the next "
        "write removes it"
        for p in sorted(set(found))
    ]


def _in_folder(name: str, folder: str) -> str:
    """A virtual source's file name with the store folder's name as it is now: a store
    moved or renamed together with its folder still names its old folder (docs allow the
    move; plain h5py reads then see fill values until the next write rewrites the index)."""
    head, sep, tail = name.partition("/")
    return f"{folder}/{tail}" if sep and head.endswith(".d") else name


def _listing(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and TEMP not in p.name)


def _first(exc: Exception) -> str:
    return str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
