"""Reading the HDF5 feature store, and :func:`store_summary` (what ``embedkit info`` shows).

Features are memory-mapped from contiguous uncompressed datasets (what the writers
write), so random rows cost what ``np.load(..., mmap_mode="r")`` costs.

    with FeatureStore("feats.h5") as fs:
        X, y = fs.features(), fs.labels()
        for xb, yb in fs.iter_batches(256, shuffle=True, seed=0):
            ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from embedkit.errors import StoreError, UserInputError, require
from embedkit.store import format as S
from embedkit.store.files.integrity import no_store
from embedkit.store.files.shards import open_existing
from embedkit.store.read.mapping import flat_rows, map_dataset
from embedkit.store.read.rowchecks import check_rows
from embedkit.store.read.state import open_index, read_state, store_nbytes

_IN_MEMORY_BYTES = 2 << 30  # iter_batches loads the selection when it is at most this big


class FeatureStore:
    """A read-only view of an embedkit feature store.

    Parameters
    ----------
    path : str or Path
        The ``.h5`` store written by ``embedkit extract`` or :func:`embedkit.rows.from_arrays`.
    version : int, optional
        Open this version (``embedkit store log`` lists them) instead of the newest. A
        reader holds its version for its whole life: commits never delete its files,
        only ``embedkit store vacuum`` does.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> X = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> from embedkit.rows import from_arrays
    >>> _ = from_arrays(path, X, y=["a", "b", "a", "b", "a", "b"])
    >>> with FeatureStore(path) as fs:
    ...     print(len(fs), fs.taps, fs.label_names, fs.features(rows=[5, 0]).tolist())
    6 ['features'] ['a', 'b'] [[10.0, 11.0], [0.0, 1.0]]
    """

    def __init__(self, path: str | Path, *, version: int | None = None):
        self.path = Path(path)
        self._handles: list[h5py.File] = []
        try:
            self._open(version)
        except BaseException:
            self.close()
            raise

    def _open(self, version: int | None) -> None:
        if not self.path.exists():
            raise StoreError(no_store(self.path))
        source = self.path if version is None else S.version_path(self.path, version)
        if version is not None and not source.is_file():
            have = ", ".join(map(str, S.versions(self.path))) or "none"
            raise UserInputError(f"{self.path}: has no version {version} (versions: {have})")
        with open_index(self.path, source) as index:
            state = read_state(index, self.path)
        for name in state.shards:  # no commit deletes a file a version names
            self._handles.append(open_existing(self.path, name))
        check_rows(self.path, state, self._handles)  # values, shards, unique ids
        self._state = state
        self.fingerprint = state.fingerprint
        self._starts = state.segments[:, 2].copy()  # (M,) first row of each segment
        self._views: dict[str, list[np.ndarray]] = {}
        self._flat: dict[str, tuple] = {}
        self._ids: np.ndarray | None = None

    @property
    def version(self) -> int:
        """The version (commit number) this reader holds; 0 for a store before versions."""
        return int(self._state.attrs.get("version", 0))

    def refresh(self) -> FeatureStore:
        """Move to the newest committed version (arrays handed out stay valid)."""
        self.close()
        self.__init__(self.path)
        return self

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the files (arrays already handed out stay valid)."""
        self._views, self._flat = {}, {}
        for f in self._handles:
            f.close()
        self._handles = []

    def __len__(self) -> int:
        return self._state.n

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, n={len(self)}, taps={self.taps})"

    # -- description -------------------------------------------------------------------
    @property
    def taps(self) -> list[str]:
        """Tap (dataset) names, in the order the backbone declared them."""
        return [t.name for t in self.fingerprint.tap_infos]

    @property
    def default_tap(self) -> str:
        return self.taps[0]

    def tap_info(self, tap: str | None = None) -> S.TapInfo:
        """The :class:`TapInfo` of ``tap`` (name, per-item shape, pooling, stride, ...)."""
        tap = self._tap(tap)
        return next(t for t in self.fingerprint.tap_infos if t.name == tap)

    @property
    def provenance(self) -> dict:
        """All root attributes: schema, versions, backbone hash, preprocessing, runs, ..."""
        out = {}
        for key, value in self._state.attrs.items():
            if key in ("taps", "preprocess", "runs") and isinstance(value, str):
                value = json.loads(value)
            out[key] = value.item() if hasattr(value, "item") else value
        return out

    @property
    def nbytes(self) -> int:
        """Size of the store in bytes: the index plus the shards of this snapshot."""
        return store_nbytes(self.path, self._state)

    @property
    def n_shards(self) -> int:
        """Number of shard files this snapshot reads from."""
        return len(self._state.shards)

    # -- columns -----------------------------------------------------------------------
    def ids(self, rows=None) -> np.ndarray:
        """Item ids as an array of ``str``."""
        if self._ids is None:
            self._ids = self._state.gather([f[S.IDS].asstr()[...] for f in self._handles])
            self._ids = self._ids.astype(str)
        return self._ids.copy() if rows is None else self._ids[_as_index(rows)]

    @property
    def has_labels(self) -> bool:
        return bool(self._state.label_names) and bool((self._state.labels >= 0).any())

    def labels(self, rows=None) -> np.ndarray:
        """Integer labels (``-1`` where unlabelled); index into :attr:`label_names`."""
        if not self.has_labels:
            raise StoreError(
                f"{self.path}: has no labels; extract from a folder with one subfolder per "
                "class, a CSV/JSONL with --label-column, or an array with --labels labels.npy"
            )
        y = self._state.labels
        return y.copy() if rows is None else y[_as_index(rows)]

    @property
    def label_names(self) -> list[str]:
        return list(self._state.label_names)

    def splits(self, rows=None) -> np.ndarray:
        """The stored split of each row: ``"train"``, ``"val"``, ``"test"`` or ``""``."""
        s = self._state.split.astype(str)
        return s if rows is None else s[_as_index(rows)]

    def bad_items(self) -> list[dict]:
        """Items skipped with ``--skip-bad``: ``{"id", "reason"}`` dicts."""
        return [{"id": r["id"], "reason": r["reason"]} for r in self._state.bad.values()]

    # -- features ----------------------------------------------------------------------
    def features(self, tap: str | None = None, rows=None, dtype=np.float32) -> np.ndarray:
        """Features of ``tap`` as an in-memory array ``(n, *shape)``.

        ``rows`` is None (all), a slice, or integer indices in any order.
        """
        tap = self._tap(tap)
        views = self._tap_views(tap)
        dtype = dtype or self.tap_info(tap).dtype
        idx = _as_index(slice(None) if rows is None else rows)
        if len(views) == 1:
            if isinstance(idx, slice):  # a view of the file: copy it out once
                return np.array(views[0][idx], dtype=dtype, copy=True)
            return views[0][idx].astype(dtype, copy=False)  # fancy index: a copy
        if isinstance(idx, slice) and idx.step in (None, 1):
            lo, hi, _ = idx.indices(len(self))
            out = np.empty((max(0, hi - lo), *views[0].shape[1:]), dtype=dtype)
            for v, start in zip(views, self._starts.tolist()):  # one copy per segment
                a, b = max(lo, start), min(hi, start + len(v))
                if a < b:
                    out[a - lo : b - lo] = v[a - start : b - start]
            return out
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        return self._gather(tap)(idx).astype(dtype, copy=False)

    def iter_batches(
        self,
        batch_size: int = 256,
        *,
        tap: str | None = None,
        rows=None,
        shuffle: bool = False,
        seed: int | None = None,
        labels: bool = True,
        memory_limit: int = _IN_MEMORY_BYTES,
        block_rows: int = 8192,
        buffer_blocks: int = 4,
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield ``(X, y)`` float32 minibatches (``y`` is None with ``labels=False``).

        When the selection fits in ``memory_limit`` bytes, batches are gathered straight
        from the memory-mapped file (or, for a chunked foreign layout, from one in-memory
        load) in a full permutation. Otherwise contiguous blocks of ``block_rows`` are read
        in shuffled order and shuffled inside a buffer of ``buffer_blocks`` blocks, so
        memory stays bounded and reads stay sequential (random-row reads from HDF5 are
        10-100x slower, measured by hand).
        """
        if batch_size < 1:
            raise UserInputError(f"batch_size must be at least 1, got {batch_size}")
        tap = self._tap(tap)
        sel = np.arange(len(self)) if rows is None else np.arange(len(self))[_as_index(rows)]
        y_all = self._state.labels if labels else None
        if labels and not self.has_labels:
            self.labels()  # raises with the hint
        rng = np.random.default_rng(seed)
        info = self.tap_info(tap)
        row_bytes = int(np.prod(info.shape)) * np.dtype(info.dtype).itemsize
        if len(sel) * row_bytes <= memory_limit:
            sel = sel[rng.permutation(len(sel))] if shuffle else sel
            take = self._gather(tap)  # looked up once: per batch, one numpy gather
            for lo in range(0, len(sel), batch_size):
                rb = sel[lo : lo + batch_size]
                yield take(rb).astype(np.float32, copy=False), (y_all[rb] if labels else None)
            return
        sel = np.sort(sel) if shuffle else sel
        blocks = [sel[lo : lo + block_rows] for lo in range(0, len(sel), block_rows)]
        if shuffle:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        carry = np.empty(0, dtype=np.int64)  # rows left over from the last buffer
        for start in range(0, len(blocks), buffer_blocks):
            r = np.concatenate([carry, *blocks[start : start + buffer_blocks]])
            x = self.features(tap, rows=r)  # one read per buffer, in file order
            order = rng.permutation(len(r)) if shuffle else np.arange(len(r))
            last = start + buffer_blocks >= len(blocks)
            n_full = len(r) if last else (len(r) // batch_size) * batch_size
            for lo in range(0, n_full, batch_size):
                take = order[lo : lo + batch_size]
                yield x[take], (y_all[r[take]] if labels else None)
            carry = r[order[n_full:]]

    def torch_dataset(self, tap: str | None = None, rows=None):
        """A ``torch.utils.data.Dataset`` of ``(x, y)`` float32/int64 tensors (needs torch)."""
        torch = require("torch", "torch", "FeatureStore.torch_dataset")
        X = torch.from_numpy(self.features(tap, rows=rows))
        y = torch.from_numpy(self.labels(rows)) if self.has_labels else torch.full((len(X),), -1)
        return torch.utils.data.TensorDataset(X, y)

    # -- internals ---------------------------------------------------------------------
    def _tap(self, tap: str | None) -> str:
        if tap is None:
            return self.default_tap
        if tap not in self.taps:
            raise UserInputError(
                f"{self.path}: has no tap {tap!r}; its taps are: {', '.join(self.taps)}"
            )
        return tap

    def _tap_views(self, tap: str) -> list[np.ndarray]:
        """One memory-mapped array per segment of rows: (length, *shape) each."""
        if tap not in self._views:
            maps = [map_dataset(f, f"{S.FEATURES}/{tap}") for f in self._handles]
            views = [maps[k][src : src + n] for k, src, _, n in self._state.segments.tolist()]
            info = self.tap_info(tap)  # no rows: one empty view
            self._views[tap] = views or [np.zeros((0, *info.shape), dtype=info.dtype)]
        return self._views[tap]

    def _gather(self, tap: str):
        """A function of row indices (any order) -> their rows: a fancy index of the one
        mapped shard, or of :func:`~embedkit.store.read.mapping.flat_rows` over several (so 50
        shards cost what one does)."""
        views = self._tap_views(tap)
        if len(views) == 1:
            return views[0].__getitem__
        if tap not in self._flat:
            rows, offsets = flat_rows(views, self._starts, self._state.segments[:, 3])
            self._flat[tap] = (rows, offsets, views)  # views keep the maps alive
        rows, offsets, _ = self._flat[tap]
        dtype, shape = views[0].dtype, views[0].shape[1:]
        return lambda idx: rows[offsets[idx]].view(dtype).reshape(len(idx), *shape)


def _as_index(rows):
    return rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)


_RECORDED = ("schema_version", "embedkit_version", "created", "updated", "backbone_sha256")


def store_summary(path) -> dict:
    """Everything ``embedkit info`` prints, as a dict (sizes, counts, taps, provenance).

    >>> store_summary("feats.h5")["items"]  # doctest: +SKIP
    60000
    """
    with FeatureStore(path) as fs:
        prov = fs.provenance
        splits = fs.splits()
        out = {
            "path": str(fs.path),
            "size_bytes": fs.nbytes,
            "shards": fs.n_shards,
            "items": len(fs),
            **{k: prov.get(k) for k in _RECORDED},  # None where the store does not say
            **{k: prov.get(k, "") for k in ("provider", "model")},
            **{k: prov.get(k) for k in ("dtype", "preprocess")},
            "taps": [t.to_dict() for t in fs.fingerprint.tap_infos],
            "labels": {},
            "splits": {s: int((splits == s).sum()) for s in ("train", "val", "test", "")},
            "bad_items": len(fs.bad_items()),
            "runs": len(prov.get("runs", [])),
        }
        if fs.has_labels:
            y = fs.labels()
            counts = np.bincount(y[y >= 0], minlength=len(fs.label_names))
            out["labels"] = {n: int(c) for n, c in zip(fs.label_names, counts)}
            out["unlabelled"] = int((y < 0).sum())
    return out
