"""Immutable shard files: the rows of a store, written once and never modified.

A shard holds the row datasets of a store (``ids``, ``digests``, ``labels`` +
``label_names``, ``split``, ``features/<tap>``), contiguous and uncompressed so readers can
memory-map it, under a name hashed from its content, so a retried task rewrites the same
file. Features are written with ``pwrite`` at the offsets HDF5 allocated, so a full disk
is a one-line :class:`~embedkit.errors.StoreError`, never a crash inside HDF5.

    path = write_shard("shards/", fingerprint, ids, digests, {"pool": X}, labels=names)
    commit_shards("feats.h5", [path], fingerprint)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError, StoreMismatchError, UserInputError, first_line
from embedkit.files import publish, temp_name, write_bytes_atomic
from embedkit.store import format as S
from embedkit.store.files.integrity import stamp

_WRITE_BYTES = 64 << 20  # bytes per pwrite call


def content_name(fingerprint: S.Fingerprint, ids, digests, labels, splits) -> str:
    """File name of a shard: a hash of everything that defines its rows."""
    h = hashlib.sha256(fingerprint.digest.encode())
    for column in (ids, digests, labels, splits):
        h.update(b"\x00" + "\x1f".join("" if v is None else S.as_text(v) for v in column).encode())
    return h.hexdigest()[:32] + ".h5"


def id_hashes(ids) -> np.ndarray:
    """(n,) S16: the first 16 bytes of each id's sha256, how commits find ids fast."""
    return np.asarray(
        [hashlib.sha256(S.as_text(i).encode()).digest()[:16] for i in ids], dtype="S16"
    )


class ShardBuilder:
    """Create a shard of ``n`` rows at a temporary path; features arrive with :meth:`write`.

    The row metadata is written (and the feature space allocated) up front; :meth:`finish`
    fsyncs the file and renames it to its content-derived name in ``directory``.
    ``pending`` names a file that outlives this process instead of ``NAME.tmp-PID`` (the
    extract journal's rows, resumed by a later run): it is created complete (tmp + rename)
    or, when it exists, reopened to write the rows still missing.
    """

    def __init__(
        self,
        directory,
        fingerprint,
        ids,
        digests,
        labels,
        label_names,
        splits,
        *,
        pending=None,
        name: str | None = None,  # the content name, when the caller computed it already
    ):
        self.directory = Path(directory)
        self.fingerprint, self.taps = fingerprint, fingerprint.tap_infos
        self.n = len(ids)
        label_list = ["" if v is None else S.as_text(v) for v in labels]
        self.name = name or content_name(fingerprint, ids, digests, label_list, splits)
        own = temp_name(self.directory / self.name)
        self.tmp = Path(pending) if pending is not None else own
        index = {name: i for i, name in enumerate(label_names)}
        codes = np.asarray([index[v] if v else -1 for v in label_list], dtype=np.int64)
        row_bytes = sum(int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in self.taps)
        self.nbytes = self.n * (row_bytes + 100) + (64 << 10)
        if pending is not None and self.tmp.exists():
            with h5py.File(self.tmp, "r") as f:
                self.offsets = {
                    t.name: int(f[f"{S.FEATURES}/{t.name}"].id.get_offset()) for t in self.taps
                }
        else:
            make = self.tmp if pending is None else self.tmp.with_name(own.name)
            with disk_errors(self.tmp, self.nbytes):
                check_free(self.directory, self.nbytes, self.tmp)
                self.offsets = self._create(make, ids, digests, codes, label_names, splits)
                if make != self.tmp:  # a pending file exists only once complete
                    publish(make, self.tmp)
        self._fd = os.open(self.tmp, os.O_WRONLY)

    def _create(self, path, ids, digests, codes, names, splits) -> dict[str, int]:
        text = h5py.string_dtype("utf-8")
        with h5py.File(path, "w", userblock_size=S.USERBLOCK) as f:
            f.attrs["format"] = S.SHARD_FORMAT
            for key, value in self.fingerprint.to_attrs().items():
                f.attrs[key] = value
            f.attrs["n_items"] = self.n
            f.create_dataset(S.IDS, data=np.asarray(list(ids), dtype=object), dtype=text)
            f.create_dataset(S.DIGESTS, data=np.asarray(digests, dtype="S64"))
            f.create_dataset(S.ID_HASH, data=id_hashes(ids))
            f.create_dataset(S.LABELS, data=codes)
            f.create_dataset(S.LABEL_NAMES, data=np.asarray(list(names), dtype=object), dtype=text)
            f.create_dataset(S.SPLIT, data=np.asarray(splits, dtype="S8"))
            group = f.create_group(S.FEATURES)
            return {tap.name: _allocate(group, tap, self.n) for tap in self.taps}

    def write(self, tap: S.TapInfo, lo: int, rows: np.ndarray) -> None:
        """Write ``rows`` (k, *shape) at row ``lo`` of ``tap``."""
        data = np.ascontiguousarray(rows, dtype=tap.dtype)
        row_bytes = data.itemsize * int(np.prod(tap.shape))
        view = memoryview(data.reshape(-1).view(np.uint8))
        offset = self.offsets[tap.name] + lo * row_bytes
        with disk_errors(self.tmp, self.nbytes):
            done = 0
            while done < len(view):
                done += os.pwrite(self._fd, view[done : done + _WRITE_BYTES], offset + done)

    def sync(self) -> None:
        """Make the rows written so far durable (a journal marks them done after this)."""
        with disk_errors(self.tmp, self.nbytes):
            os.fdatasync(self._fd)

    def close(self) -> None:
        """Close the file, keeping it (a pending file stays for the next run)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self, final: Path | None = None, before_rename=None) -> Path:
        """``before_rename(tmp)``, fsync, rename to ``final`` (default: the content name)."""
        final = Path(final) if final is not None else self.directory / self.name
        with disk_errors(self.tmp, self.nbytes):
            self.close()
            if before_rename is not None:
                before_rename(self.tmp)
            stamp(self.tmp)  # the CRC-32 of every byte, checked by store verify
            publish(self.tmp, final)
        return final

    def abort(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardBuilder:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:  # a failed or killed write leaves no file behind
            self.abort()


def _allocate(group: h5py.Group, tap: S.TapInfo, n: int) -> int:
    """A contiguous dataset whose space is allocated now and never filled by HDF5."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    shape = (n, *tap.shape)
    space = h5py.h5s.create_simple(shape, shape)
    dsid = h5py.h5d.create(
        group.id, tap.name.encode(), h5py.h5t.py_create(np.dtype(tap.dtype)), space, dcpl=dcpl
    )
    h5py.Dataset(dsid).attrs.update(S.tap_attrs(tap))
    offset = dsid.get_offset()
    if offset is None:
        raise StoreError(f"{group.file.filename}: HDF5 did not allocate tap {tap.name!r}")
    return int(offset)


def write_shard(
    directory,
    fingerprint: S.Fingerprint,
    ids: Sequence[str],
    digests: Sequence[str],
    features: dict[str, np.ndarray],
    *,
    labels: Sequence[str | None] | None = None,
    splits: Sequence[str | None] | None = None,
) -> Path:
    """Write one immutable shard file atomically and return its path.

    The file name is derived from the content, so writing the same rows again (a retried
    worker task) gives the same file; a file already under that name is replaced (it may
    be a damaged copy).

    Parameters
    ----------
    directory : str or Path
        Where the shard goes (created if missing); any folder on the store's file system
        is cheapest, since :func:`commit_shards` then links instead of copying.
    fingerprint : Fingerprint
        What produced the features; :func:`commit_shards` refuses a shard of another.
    ids, digests : sequence of str
        Item ids and sha256 hex digests of the items' content, one per row.
    features : dict of str to ndarray
        One ``(n, *shape)`` array per tap of the fingerprint.
    labels : sequence of str or None, optional
        Class name per row (None: unlabelled).
    splits : sequence of str or None, optional
        ``"train"``, ``"val"``, ``"test"`` or None per row.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from embedkit.store import Fingerprint, TapInfo
    >>> fp = Fingerprint.create("arrays", [TapInfo("pool", (2,))], {"kind": "features"})
    >>> d = tempfile.mkdtemp()
    >>> X = np.ones((3, 2), np.float32)
    >>> rows = (["a", "b", "c"], ["0" * 64] * 3, {"pool": X})
    >>> a = write_shard(d, fp, *rows, labels=["x", None, "y"])
    >>> a == write_shard(d, fp, *rows, labels=["x", None, "y"])  # same rows, same file
    True
    """
    n = len(ids)
    if n == 0:
        raise UserInputError("a shard needs at least one row")
    if len(digests) != n:
        raise UserInputError(f"{len(digests)} digests for {n} ids")
    labels = list(labels) if labels is not None else [None] * n
    splits = [check_split(v) for v in (splits if splits is not None else [None] * n)]
    arrays = {}
    for tap in fingerprint.tap_infos:
        if tap.name not in features:
            raise UserInputError(f"no features for tap {tap.name!r}; pass one array per tap")
        x = np.asarray(features[tap.name])
        if x.shape != (n, *tap.shape):
            raise UserInputError(
                f"tap {tap.name!r} gave shape {x.shape[1:]} per item, the store expects "
                f"{tap.shape}; re-export the model or write to a new --out store"
            )
        arrays[tap.name] = x
    names = list(dict.fromkeys(v for v in labels if v is not None))
    Path(directory).mkdir(parents=True, exist_ok=True)
    with ShardBuilder(directory, fingerprint, ids, digests, labels, names, splits) as builder:
        for tap in fingerprint.tap_infos:
            builder.write(tap, 0, arrays[tap.name])
        return builder.finish()


def open_shard(path, fingerprint: S.Fingerprint | None = None) -> h5py.File:
    """Open a shard (or a one-file store) read-only, checking its fingerprint."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or not path.exists():  # or removed by a vacuum
            raise FileNotFoundError(errno.ENOENT, "no such shard", str(path)) from None
        why = f"not a readable shard ({first_line(exc, 160)})"
        raise StoreError(f"{path}: {why}; {S.RESTORE}") from None
    if f.attrs.get("format") not in (S.SHARD_FORMAT, S.FORMAT_NAME):
        f.close()
        raise StoreError(f"{path}: is not an embedkit shard")
    if fingerprint is not None:
        stored = S.Fingerprint.from_attrs(f.attrs)
        field = stored.first_difference(fingerprint)
        if field is not None and field != "schema_version":
            f.close()
            raise StoreMismatchError(
                str(path), field, getattr(stored, field), getattr(fingerprint, field)
            )
    return f


def open_existing(store, name: str) -> h5py.File:
    """Open a shard the index names; a missing one is a one-line StoreError."""
    try:
        return open_shard(S.shard_path(store, name))
    except FileNotFoundError:
        raise StoreError(missing_file(store, S.shard_path(store, name))) from None


def read_shard(store, name: str, read):
    """``read(f)`` of the shard ``name`` the index names, opened and closed around it."""
    with open_existing(store, name) as f:
        return read(f)


def missing_file(store, path: Path) -> str:
    """The one-line error for a shard or column file that the index names but is gone."""
    what = "column file" if path.parent.name == S.COLUMNS else "shard"
    return (
        f"{store}: {what} {path} is missing; a store is the index file plus "
        f"its folder {S.sidecar(store).name}/: copy both, or share one file made with "
        "`embedkit store pack`"
    )


def row_labels(f: h5py.File) -> list[str]:
    """The class name of each row of the open shard ``f`` ("" where unlabelled)."""
    names = [S.as_text(v) for v in f[S.LABEL_NAMES][...]]
    return ["" if c < 0 else names[c] for c in f[S.LABELS][...].tolist()]


def shard_content_name(f: h5py.File) -> str:
    """The name :func:`content_name` gives the rows of the open shard ``f`` ("" if unreadable)."""
    try:
        return content_name(
            S.Fingerprint.from_attrs(f.attrs),
            f[S.IDS].asstr()[...].tolist(),
            f[S.DIGESTS][...].tolist(),
            row_labels(f),
            f[S.SPLIT][...].tolist(),
        )
    except (KeyError, ValueError, TypeError, OSError):  # attributes the hash needs
        return ""


def check_split(value: str | None) -> str:
    value = S.as_text(value) if value else ""
    if value and value not in S.SPLITS:
        raise UserInputError(f"split {value!r} is not valid; use one of {', '.join(S.SPLITS)}")
    return value


# -- disk space and durability -----------------------------------------------------------
def check_free(directory, needed: int, path) -> None:
    """Refuse to start a write that cannot fit: one line naming ``path`` and the space."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise StoreError(_no_space(path, needed, free))


@contextlib.contextmanager
def disk_errors(path, needed: int):
    """Turn a full disk (or another OS error) during a write into a one-line StoreError."""
    try:
        yield
    except OSError as exc:
        parent = Path(path).parent
        free = shutil.disk_usage(parent).free if parent.exists() else 0
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or free < needed:
            raise StoreError(_no_space(path, needed, free)) from None
        raise StoreError(f"{path}: cannot write ({exc})") from None


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`embedkit.files.atomic_file`); full disk:
    a one-line StoreError."""
    with disk_errors(path, len(data)):
        return write_bytes_atomic(path, data)


def _no_space(path, needed: int, free: int) -> str:
    return (
        f"{path}: not enough disk space: needs {needed / 1e6:.1f} MB, {free / 1e6:.1f} MB "
        "free; free some space and re-run (committed rows are untouched, the run resumes)"
    )
