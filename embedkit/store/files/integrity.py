"""Whole-file checksums: every shard, column file and index carries the CRC-32 of its bytes.

:func:`stamp` writes ``embedkit-crc32 XXXXXXXX`` into the file's 512-byte HDF5 user block
before the file is renamed into place; :func:`checksum_problem` (``store verify``) finds
any byte changed since and names the file. Files from before checksums (no user block)
are read as they are (docs/store-format.md, "Checksums, versions, recover and repair").

    with h5py.File(tmp, "w", userblock_size=S.USERBLOCK) as f:
        ...
    stamp(tmp)                      # then fsync and rename
    checksum_problem(path)          # None, or what is wrong, in a few words
"""

from __future__ import annotations

import filecmp
import json
import os
import zlib
from pathlib import Path

from embedkit.errors import StoreError
from embedkit.files import TEMP
from embedkit.store import format as S

_MAGIC = b"embedkit-crc32 "
_HDF5 = b"\x89HDF\r\n\x1a\n"
_STEP = 16 << 20  # bytes read per step


def _crc(fd: int, start: int) -> int:
    crc, offset = 0, start
    while True:
        block = os.pread(fd, _STEP, offset)
        if not block:
            return crc
        crc = zlib.crc32(block, crc)
        offset += len(block)


def _header(crc: int) -> bytes:
    text = _MAGIC + b"%08x\n" % crc
    return text + bytes(S.USERBLOCK - len(text))


def stamp(path) -> bool:
    """Write the CRC-32 of ``path``'s bytes into its user block; False when it has none."""
    fd = os.open(path, os.O_RDWR)
    try:
        if os.pread(fd, len(_HDF5), 0) == _HDF5:  # no user block (an older file): leave it
            return False
        os.pwrite(fd, _header(_crc(fd, S.USERBLOCK)), 0)
        return True
    finally:
        os.close(fd)


def checksum_problem(path) -> str | None:
    """What is wrong with ``path``'s checksum (None: it holds, or the file has none).

    Examples
    --------
    >>> import h5py, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> with h5py.File(path, "w", userblock_size=S.USERBLOCK) as f:
    ...     _ = f.create_dataset("x", data=[1.0, 2.0])
    >>> stamp(path), checksum_problem(path)
    (True, None)
    >>> with open(path, "r+b") as f:
    ...     _ = f.seek(-3, 2)
    ...     byte = f.read(1)
    ...     _ = f.seek(-3, 2)
    ...     _ = f.write(bytes([byte[0] ^ 1]))
    >>> checksum_problem(path)  # doctest: +ELLIPSIS
    'its bytes do not match the CRC-32 written with it (...); the file changed after it was written'
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        head = os.pread(fd, S.USERBLOCK, 0)
        if head[: len(_HDF5)] == _HDF5:
            return None  # written before checksums
        if not head.startswith(_MAGIC):
            return "its first bytes are neither a checksum nor an HDF5 signature (damaged)"
        try:
            stored = int(head[len(_MAGIC) : len(_MAGIC) + 8], 16)
        except ValueError:
            return "its checksum header is damaged"
        if head != _header(stored):
            return "its checksum header is damaged"
        found = _crc(fd, S.USERBLOCK)
    finally:
        os.close(fd)
    if found != stored:
        return (
            f"its bytes do not match the CRC-32 written with it ({found:08x}, not "
            f"{stored:08x}); the file changed after it was written"
        )
    return None


def file_problem(store, path: Path, what: str) -> str | None:
    """One verify line for a file whose checksum fails (None when it holds)."""
    problem = checksum_problem(path)
    if problem is None:
        return None
    return f"{store}: {what} {path.name}: {problem}; run `embedkit store verify {store} --repair`"


# -- shards marked for recomputation -----------------------------------------------------
RECOMPUTE = "recompute"  # root attribute: JSON list of damaged shards whose rows to recompute


def marked_shards(attrs: dict) -> list[str]:
    """The shards a repair marked for recomputation (root attribute ``recompute``)."""
    try:
        names = json.loads(attrs.get(RECOMPUTE, "[]"))
    except (TypeError, ValueError):
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


# -- the view and its versions --------------------------------------------------------------
def view_is_current(store) -> bool:
    """Whether the store file holds the bytes of its newest version."""
    numbers = S.versions(store)
    return bool(numbers) and filecmp.cmp(store, S.version_path(store, numbers[-1]), shallow=False)


def debris(store) -> list[Path]:
    """The temporary files (``NAME.tmp-PID``) killed writers left beside and in the store."""
    store = Path(store)
    found = list(store.parent.glob(f"{store.name}{TEMP}*"))
    if S.sidecar(store).is_dir():
        found += [p for p in S.sidecar(store).rglob(f"*{TEMP}*") if p.is_file()]
    return sorted(set(found))


# -- a missing index -----------------------------------------------------------------------
def check_not_orphaned(path) -> None:
    """Refuse a missing index ``path`` whose folder still holds versions, shards or column files.

    Nothing is refused when the index exists, or when the folder holds only what an
    unfinished first extract left (a journal beside the shards and no version: the re-run
    resumes).
    """
    path = Path(path)
    if path.exists() or path.is_symlink() or not S.sidecar(path).is_dir():
        return
    n_versions = len(S.versions(path))
    if not n_versions and S.journal_dir(path).exists():
        return
    shards, columns = folder_files(S.shard_dir(path)), folder_files(S.column_dir(path))
    if n_versions or shards or columns:
        raise StoreError(
            f"{path}: the index file is missing but its folder {S.sidecar(path)}/ still holds "
            f"{n_versions} version(s), {len(shards)} shard(s) and {len(columns)} column "
            f"file(s); run `embedkit store recover {path}` to restore the index from them (or "
            "move the folder away to start anew)"
        )


def folder_files(folder: Path) -> list[Path]:
    """The files in ``folder`` but the temporary ones (``NAME.tmp-PID``), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and TEMP not in p.name)


def no_store(path) -> str:
    """The one-line error for a store path with nothing there (or an orphaned folder)."""
    check_not_orphaned(path)
    return f"{path}: no such store; create it with `embedkit extract`"
