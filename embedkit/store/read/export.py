"""Export a store for dataframe and array users: Parquet (pandas, polars, DuckDB, Arrow) or
a folder of ``.npy`` files, streamed in row chunks through the public :class:`FeatureStore`.

    embedkit store export feats.h5 --format parquet --out feats.parquet
    embedkit store export feats.h5 --format npy --tap pool --out feats_npy/

The columns, files and metadata are described in docs/store-format.md, "Export". The
output appears whole or not at all: it is written beside ``out`` and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError, require
from embedkit.files import atomic_file, fsync_path, publish, temp_name
from embedkit.progress import Progress
from embedkit.store.read.reader import FeatureStore

FORMATS = ("parquet", "npy")
RESERVED = ("id", "label", "split", "ids", "labels", "splits", "label_names")  # not tap names
CHUNK_ROWS = 8_192  # rows read, converted and written at a time
REOPEN_ROWS = 32_768  # the store is reopened after this many rows: mapped pages are let go


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_store` wrote."""

    path: str
    format: str
    n_rows: int
    taps: tuple[str, ...]
    nbytes: int

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.n_rows} rows, taps {', '.join(self.taps)} "
            f"({self.format}, {self.nbytes / 1e6:.1f} MB)"
        )


def export_store(
    store: str | Path,
    out: str | Path,
    *,
    format: str = "parquet",
    taps: list[str] | tuple[str, ...] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = False,
    overwrite: bool = False,
) -> ExportSummary:
    """Write the rows of ``store`` (ids, labels, splits, features) to ``out``.

    Parameters
    ----------
    store : str or Path
        The feature store to read.
    out : str or Path
        A ``.parquet`` file, or a folder for ``format="npy"``; must not exist.
    format : {"parquet", "npy"}
    taps : sequence of str, optional
        The taps to write (default: all, in the store's order).
    chunk_rows : int
        Rows per chunk (and per Parquet row group); memory is about one chunk's worth.
    progress : bool
        A progress bar on stderr.
    overwrite : bool
        Replace an existing ``out`` (the CLI's overwrite guard decides when); otherwise
        only an empty file or folder is replaced.

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> X = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> from embedkit.rows import from_arrays
    >>> _ = from_arrays(f"{d}/f.h5", X, y=["a", "b", "a"])
    >>> print(export_store(f"{d}/f.h5", f"{d}/f.parquet"))  # doctest: +ELLIPSIS
    /.../f.parquet: 3 rows, taps features (parquet, ... MB)
    >>> df = pd.read_parquet(f"{d}/f.parquet")
    >>> df["label"].tolist(), df["features"][2].tolist()
    (['a', 'b', 'a'], [4.0, 5.0])
    """
    if format not in FORMATS:
        raise UserInputError(f"--format {format!r} is not one of: {', '.join(FORMATS)}")
    if chunk_rows < 1:
        raise UserInputError(f"chunk_rows {chunk_rows}: pass a positive number of rows")
    out = Path(out)
    if out.exists() and not _empty(out) and not overwrite:
        raise UserInputError(f"{out}: already exists; choose a new path or delete it first")
    if not out.parent.is_dir():
        raise UserInputError(f"{out.parent}: no such folder; create it first")
    with FeatureStore(store) as fs:
        taps = tuple(taps) if taps else tuple(fs.taps)
        for tap in taps:
            fs.tap_info(tap)  # an unknown tap: the reader's one-line error, listing the taps
            if tap in RESERVED or "/" in tap:
                raise UserInputError(
                    f"{store}: tap {tap!r} would clash with an exported column or file name"
                )
        rows = _Rows(fs, store)
    del fs  # its cached columns go with it
    if format == "parquet":
        with atomic_file(out) as tmp, contextlib.closing(rows):
            _write_parquet(rows, tmp, taps, chunk_rows, progress)
    else:
        tmp = temp_name(out)
        try:
            with contextlib.closing(rows):
                _write_npy(rows, tmp, taps, chunk_rows, progress)
            for path in tmp.iterdir():
                fsync_path(path)
            old = temp_name(out).with_suffix(".old")
            if out.exists():  # an empty folder, or the one --overwrite replaces: set aside
                os.replace(out, old)
            publish(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    nbytes = sum(p.stat().st_size for p in out.iterdir()) if out.is_dir() else out.stat().st_size
    return ExportSummary(str(out), format, rows.n, taps, nbytes)


def is_export(path: Path) -> bool:
    """Whether ``path`` is an export this module wrote (what the CLI may replace)."""
    if path.is_dir():
        return (path / "ids.npy").is_file() and (path / "label_names.json").is_file()
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(b"embedkit", b"{}")).get("format") == "embedkit-export"
    except Exception:  # noqa: BLE001 - not readable Parquet: not ours
        return False


def _empty(path: Path) -> bool:
    return not any(path.iterdir()) if path.is_dir() else path.stat().st_size == 0


class _Rows:
    """The store's columns, read once, and its features in chunks from one version."""

    def __init__(self, fs: FeatureStore, path):
        self.path, self.n = Path(path), len(fs)
        self.ids = fs.ids()
        self.labels = fs.labels() if fs.has_labels else np.full(self.n, -1, np.int64)
        self.label_names = fs.label_names
        self.splits = fs.splits()
        self.infos = {t: fs.tap_info(t) for t in fs.taps}
        self.fingerprint = fs.fingerprint.to_attrs()
        self.version = fs.version or None  # reopened at this version: commits do not move it
        self._fs: FeatureStore | None = None
        self._since = 0

    def features(self, tap: str, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of ``tap`` in the storage dtype ``(hi - lo, *shape)``."""
        if self._fs is None or self._since >= REOPEN_ROWS:
            self.close()  # unmaps what was read so far: memory stays flat in the store size
            self._fs = FeatureStore(self.path, version=self.version)
            self._since = 0
        self._since += hi - lo
        return self._fs.features(tap, rows=slice(lo, hi), dtype=None)

    def close(self) -> None:
        if self._fs is not None:
            self._fs.close()
            self._fs = None


def _chunks(n: int, size: int, progress: bool):
    with Progress("export", n, unit="rows", enabled=progress) as bar:
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            yield lo, hi
            bar.update(hi - lo)


def _write_parquet(rows: _Rows, tmp: Path, taps, chunk_rows: int, progress: bool) -> None:
    pa = require("pyarrow", "arrow", "store export --format parquet")
    pq = require("pyarrow.parquet", "arrow", "store export --format parquet")
    names = np.array([*rows.label_names, ""], dtype=object)  # index -1 -> ""
    fields = [pa.field("id", pa.string()), pa.field("label", pa.string()),
              pa.field("split", pa.string())]  # fmt: skip
    for tap in taps:
        info = rows.infos[tap]
        size = int(np.prod(info.shape))
        value = pa.float16() if info.dtype == "float16" else pa.float32()
        meta = {"embedkit.shape": json.dumps(list(info.shape))}
        fields.append(pa.field(tap, pa.list_(value, size), nullable=False, metadata=meta))
    shapes = {t: {"shape": list(rows.infos[t].shape), "dtype": rows.infos[t].dtype} for t in taps}
    about = {
        "format": "embedkit-export",
        "version": 1,
        "label_names": rows.label_names,
        "taps": shapes,
        "fingerprint": rows.fingerprint,
    }
    meta = {"embedkit": json.dumps(about, default=str)}
    schema = pa.schema(fields, metadata=meta)
    options = {"compression": {"id": "snappy", "label": "snappy", "split": "snappy"}
               | {t: "none" for t in taps},  # floats do not compress; saves the time
               "use_dictionary": ["label", "split"], "write_statistics": ["id"]}  # fmt: skip
    pool = pa.system_memory_pool()  # malloc: freed chunks go back (mimalloc keeps ~100 MB)
    with pq.ParquetWriter(tmp, schema, memory_pool=pool, **options) as writer:
        for lo, hi in _chunks(rows.n, chunk_rows, progress):
            labels = names[rows.labels[lo:hi]]
            splits = rows.splits[lo:hi]
            arrays = [
                pa.array(rows.ids[lo:hi].tolist(), pa.string(), memory_pool=pool),
                pa.array(labels.tolist(), pa.string(), mask=labels == "", memory_pool=pool),
                pa.array(splits.tolist(), pa.string(), mask=splits == "", memory_pool=pool),
            ]
            for tap, field in zip(taps, fields[3:]):
                x = rows.features(tap, lo, hi)  # (n, *shape), storage dtype
                flat = pa.array(np.ascontiguousarray(x).reshape(-1))  # no copy
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, type=field.type))
            writer.write_batch(pa.record_batch(arrays, schema=schema), row_group_size=hi - lo)
            del arrays, flat, x  # before the next chunk is read: one chunk at a time


def _write_npy(rows: _Rows, tmp: Path, taps, chunk_rows: int, progress: bool) -> None:
    tmp.mkdir()
    np.save(tmp / "ids.npy", rows.ids.astype(str), allow_pickle=False)
    np.save(tmp / "labels.npy", rows.labels.astype(np.int64), allow_pickle=False)
    np.save(tmp / "splits.npy", rows.splits.astype(str), allow_pickle=False)
    (tmp / "label_names.json").write_text(json.dumps(rows.label_names) + "\n", encoding="utf-8")
    for tap in taps:
        info = rows.infos[tap]
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(info.dtype)),
            "fortran_order": False,
            "shape": (rows.n, *info.shape),
        }
        with open(tmp / f"{tap}.npy", "wb") as f:  # written in order: no mapped pages
            np.lib.format.write_array_header_1_0(f, header)
            for lo, hi in _chunks(rows.n, chunk_rows, progress):
                f.write(np.ascontiguousarray(rows.features(tap, lo, hi)).data)
