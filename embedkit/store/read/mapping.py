"""Feature datasets memory-mapped through open shard files, and one gather across them.

:func:`map_dataset` maps through the HDF5 file's own handle, so the map stays valid after
``store vacuum`` unlinks the shard; :func:`flat_rows` turns the mapped segments of many
shards into one strided view, so a gather of rows from 50 shards is one fancy index.
"""

from __future__ import annotations

import ctypes
import mmap

import h5py
import numpy as np


def flat_rows(views: list[np.ndarray], starts: np.ndarray, lens: np.ndarray):
    """One read-only view over the mapped segments ``views`` and each store row's offset.

    Rows are addressed by byte offset (stride 1) in the widest word every row start is
    aligned to. Returns ``(rows, offsets)``: ``rows[offsets[i]]`` is store row ``i`` as
    ``row_bytes / unit`` words. Only the offsets of mapped rows are ever touched.
    """
    row_bytes = views[0].itemsize * int(np.prod(views[0].shape[1:]))
    addrs = np.asarray([v.__array_interface__["data"][0] for v in views], np.int64)
    base = int(addrs.min())
    span = int((addrs + lens * row_bytes).max()) - base
    # the widest word that every row start is aligned to: faster copies than bytes
    unit = next(u for u in (8, 4, 2, 1) if not ((addrs - base) % u).any())
    unit = unit if row_bytes % unit == 0 else 1
    word = np.dtype(f"u{unit}")
    raw = np.frombuffer((ctypes.c_uint8 * span).from_address(base), np.uint8)
    rows = np.lib.stride_tricks.as_strided(
        raw.view(word) if span % unit == 0 else raw[: span - span % unit].view(word),
        shape=((span - row_bytes) // unit + 1, row_bytes // unit),
        strides=(unit, unit),
        writeable=False,
    )
    first = np.repeat(addrs - base - starts * row_bytes, lens)
    offsets = (first + np.arange(int(lens.sum()), dtype=np.int64) * row_bytes) // unit
    return rows, offsets


def map_dataset(f: h5py.File, name: str) -> np.ndarray:
    """The dataset ``name`` of the open shard ``f``, memory-mapped through its file handle.

    The map holds the file itself, so it stays valid after a compaction unlinks the shard.
    """
    ds = f[name]
    offset = ds.id.get_offset()
    if ds.chunks is not None or ds.compression is not None or offset is None or not ds.size:
        return ds[...]  # a foreign layout (or no rows): read it once
    fd = f.id.get_vfd_handle()
    page = mmap.ALLOCATIONGRANULARITY
    start = offset - offset % page
    buf = mmap.mmap(fd, offset - start + ds.nbytes, access=mmap.ACCESS_READ, offset=start)
    flat = np.frombuffer(buf, dtype=ds.dtype, count=ds.size, offset=offset - start)
    return flat.reshape(ds.shape)
