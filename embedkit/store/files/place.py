"""Putting shard files into a store's folder for a commit: hard links, checked copies, and
runs of small shards (the scale-out journal's batches) merged into one new shard.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedkit.errors import StoreError
from embedkit.files import atomic_file
from embedkit.store import format as S
from embedkit.store.files.shards import (
    ShardBuilder,
    check_free,
    disk_errors,
    open_shard,
    row_labels,
)

_ADOPT_BYTES = 32 << 20  # shards at least this big are linked as they are, smaller ones merged


def place(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst``: a hard link when possible, else a checked copy.

    A file already at ``dst`` (same content-derived name) is kept only when its bytes
    equal ``src``'s; a damaged or swapped file under that name is replaced.
    """
    with contextlib.suppress(OSError):  # dst missing: samefile raises
        if os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False):
            return  # dst holds src's bytes already
    size = src.stat().st_size
    with disk_errors(dst, size), atomic_file(dst) as tmp:
        tmp.unlink(missing_ok=True)  # a killed writer's leftover under the same pid
        try:
            os.link(src, tmp)
        except OSError:
            check_free(dst.parent, size, dst)
            shutil.copyfile(src, tmp)


@dataclass
class ShardMeta:
    path: Path
    ids: list[str]
    labels: list[str]  # class name per row, "" unlabelled
    split: list[bytes]
    digests: np.ndarray
    nbytes: int
    hashes: np.ndarray | None = None  # (n,) S16 id hashes, when the shard stores them

    @classmethod
    def read(cls, path: Path, fingerprint: S.Fingerprint) -> ShardMeta:
        if not path.is_file():
            raise StoreError(f"{path}: no such shard file")
        with open_shard(path, fingerprint) as f:
            return cls(
                path=path,
                ids=f[S.IDS].asstr()[...].tolist(),
                labels=row_labels(f),
                split=f[S.SPLIT][:].astype("S8").tolist(),
                digests=f[S.DIGESTS][:],
                nbytes=path.stat().st_size,
                hashes=f[S.ID_HASH][:] if S.ID_HASH in f else None,
            )


def place_all(store: Path, metas: list[ShardMeta], fingerprint, names: list[str], extra: int):
    """Link big shards into the store; merge runs of small ones into one new shard each.

    Checks first that the merged shards plus ``extra`` bytes (the new index) fit on disk.
    """
    folder = S.shard_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    groups: list[list[ShardMeta]] = []
    for meta in metas:
        small = meta.nbytes < _ADOPT_BYTES
        if small and groups and sum(m.nbytes for m in groups[-1]) < _ADOPT_BYTES:
            groups[-1].append(meta)
        else:
            groups.append([meta])
    merged_bytes = sum(m.nbytes for group in groups if len(group) > 1 for m in group)
    check_free(folder, merged_bytes + extra, store)
    out = []
    for group in groups:
        if len(group) == 1:
            meta = group[0]
            keep = meta.path.parent == folder or meta.path.suffix == ".h5"  # else a .part
            name = meta.path.name + ("" if keep else ".h5")
            place(meta.path, folder / name)
            out.append((name, meta))
            continue
        merged = _merge(folder, group, fingerprint, names)
        out.append((merged.path.name, merged))
    return out


def _merge(folder: Path, group: list[ShardMeta], fingerprint, names) -> ShardMeta:
    ids = [i for m in group for i in m.ids]
    labels = [lab for m in group for lab in m.labels]
    split = [s for m in group for s in m.split]
    digests = np.concatenate([m.digests for m in group])
    used = [n for n in names if n in set(labels)] + sorted(set(labels) - set(names) - {""})
    # a file already under this name is replaced: it may be damaged
    with ShardBuilder(folder, fingerprint, ids, digests, labels, used, split) as builder:
        lo = 0
        for meta in group:
            with open_shard(meta.path) as f:
                for tap in fingerprint.tap_infos:
                    builder.write(tap, lo, f[f"{S.FEATURES}/{tap.name}"][...])
            lo += len(meta.ids)
        path = builder.finish()
    return ShardMeta(path, ids, labels, split, digests, path.stat().st_size)
