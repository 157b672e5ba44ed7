"""Crash-safe, incremental writes into the HDF5 feature store.

The store file is never modified in place. New rows go first into a journal folder
beside it (``STORE.journal/``), one file per batch, each written to a temporary name,
fsync'ed and renamed, so a SIGKILL loses at most the batches in flight. ``commit``
then writes a complete new store (old rows + journaled rows, contiguous layout) to a
temporary file and atomically renames it over the old one. Readers see either the old
store or the new one, never a half-written row.

    w = StoreWriter("feats.h5", fingerprint, provenance={"provider": "CPUExecutionProvider"})
    todo = w.plan(ids, digests)            # positions that need computing
    done = w.begin([ids[i] for i in todo], 64)   # batches a crashed run already wrote
    for b, batch in enumerate(batches):
        if b not in done:
            w.write_batch(b, batch_ids, batch_digests, labels, splits, {"pool": feats})
    w.commit()
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from embedkit import __version__
from embedkit.errors import StoreError, StoreMismatchError, UserInputError
from embedkit.store import schema as S
from embedkit.store.relabel import label_updates

_COPY_ROWS_BYTES = 64 << 20  # rows copied per step when rewriting a store


@dataclass(frozen=True)
class CommitSummary:
    """What a commit did to the store."""

    path: str
    n_added: int  # new rows
    n_replaced: int  # existing ids whose content changed and were recomputed
    n_total: int  # rows in the store after the commit
    n_bad: int  # items recorded as bad by this run
    nbytes: int  # store file size after the commit
    n_relabelled: int = 0  # cached rows whose label or split the source changed


class StoreWriter:
    """Add rows to a feature store, resumably and atomically.

    Parameters
    ----------
    path : str or Path
        The store file. It is created by the first ``commit``.
    fingerprint : Fingerprint
        Backbone hash, taps, preprocessing and dtype of the rows this writer adds.
        An existing store (or an unfinished journal) with another fingerprint is refused
        with :class:`~embedkit.errors.StoreMismatchError` naming the field.
    provenance : dict, optional
        Extra facts recorded with this run (provider, model path, source, ...).
    label_names : sequence of str, optional
        The class names in index order (e.g. sorted folder names). Names already in the
        store keep their index; other names are appended in this order, then in order of
        first appearance.
    """

    def __init__(
        self,
        path,
        fingerprint: S.Fingerprint,
        *,
        provenance: dict | None = None,
        label_names: Sequence[str] | None = None,
    ):
        self.path = Path(path)
        self.label_names = [str(n) for n in (label_names or [])]
        self.fingerprint = fingerprint
        self.provenance = dict(provenance or {})
        self.journal = Path(str(self.path) + ".journal")
        self._lock_fd: int | None = None
        self._todo: list[str] = []
        self._updates: dict[str, tuple[str | None, str]] = {}  # id -> (label, split)
        self._batches: list[list[str]] = []
        self._started = _now()
        self._existing = _read_existing(self.path)
        if self._existing is not None:
            self._check(self._existing.fingerprint, f"{self.path}")

    # -- planning --------------------------------------------------------------------
    def plan(
        self,
        ids: Sequence[str],
        digests: Sequence[str],
        labels: Sequence[str | None] | None = None,
        splits: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Positions into ``ids`` that need computing, in source order.

        An item needs computing when its id is not in the store, or its digest changed.
        Items recorded as bad with the same digest are not retried. The ``labels`` and
        ``splits`` the source gives for cached rows are written at commit when they changed
        (see ``relabel.py``); their features are kept.
        """
        if len(ids) != len(digests):
            raise ValueError("ids and digests must have the same length")
        seen: set[str] = set()
        for item_id in ids:
            if item_id in seen:
                raise UserInputError(
                    f"item id {item_id!r} occurs twice in the source; ids must be unique"
                )
            seen.add(item_id)
        known = self._existing.digests if self._existing is not None else {}
        bad = self._existing.bad if self._existing is not None else {}
        todo = [
            i
            for i, (item_id, digest) in enumerate(zip(ids, digests))
            if known.get(item_id) != digest and bad.get(item_id) != digest
        ]
        if self._existing is not None:
            cached = [i for i, (d, x) in enumerate(zip(digests, ids)) if known.get(x) == d]
            self._updates = label_updates(
                self._existing.stored_labels(), ids, np.asarray(cached, np.int64), labels, splits
            )
        return np.asarray(todo, dtype=np.int64)

    # -- the journal -----------------------------------------------------------------
    def begin(self, todo_ids: Sequence[str], batches: int | Sequence[Sequence[int]]) -> set[int]:
        """Open the journal for ``todo_ids``, cut into ``batches``.

        ``batches`` is a batch size (consecutive slices of ``todo_ids``) or, per batch, the
        positions into ``todo_ids`` it holds (e.g. text bucketed by length); it must be the
        same for the same ``todo_ids`` in every run. Returns the batch numbers that an
        interrupted run already journaled with exactly those ids; the caller skips them.
        Journaled batches that no longer match are discarded. Rows are committed in the
        order of ``todo_ids`` whatever the batches.
        """
        self._todo = list(todo_ids)
        if isinstance(batches, int):
            if batches < 1:
                raise UserInputError(f"--batch-size must be at least 1, got {batches}")
            n = len(self._todo)
            batches = [range(lo, min(n, lo + batches)) for lo in range(0, n, batches)]
        self._batches = [[self._todo[p] for p in positions] for positions in batches]
        self.journal.mkdir(parents=True, exist_ok=True)
        self._lock()
        manifest = self.journal / "manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            self._check(S.Fingerprint.from_attrs(old["fingerprint"]), f"{self.journal}")
        _atomic_write_text(
            manifest,
            json.dumps({"fingerprint": self.fingerprint.to_attrs(), "created": self._started}),
        )
        done = set()
        for shard in self.journal.glob("b*.npz"):
            b = int(shard.stem[1:])
            expected = self._batches[b] if b < len(self._batches) else []
            try:
                with np.load(shard, allow_pickle=False) as z:
                    got = z["ids"].tolist()
                    complete = all(f"f:{t.name}" in z.files for t in self.fingerprint.tap_infos)
            except Exception:  # a shard is renamed only once complete; be safe anyway
                got, complete = None, False
            if complete and got is not None and set(got) <= set(expected) and got:
                done.add(b)
            else:
                shard.unlink()
        for tmp in self.journal.glob("*.tmp"):
            tmp.unlink()
        return done

    def write_batch(
        self,
        batch: int,
        ids: Sequence[str],
        digests: Sequence[str],
        labels: Sequence[str | None] | None,
        splits: Sequence[str | None] | None,
        features: dict[str, np.ndarray],
    ) -> None:
        """Journal one batch atomically. ``labels`` are class names; None means unlabelled."""
        n = len(ids)
        arrays = {
            "ids": np.asarray(list(ids), dtype=str),
            "digests": np.asarray(list(digests), dtype="S64"),
            "labels": np.asarray(
                ["" if v is None else str(v) for v in (labels or [None] * n)], dtype=str
            ),
            "has_label": np.asarray([v is not None for v in (labels or [None] * n)], dtype=bool),
            "splits": np.asarray([_check_split(v) for v in (splits or [None] * n)], dtype="S8"),
        }
        for tap in self.fingerprint.tap_infos:
            if tap.name not in features:
                raise StoreError(f"batch {batch} has no features for tap {tap.name!r}")
            x = np.asarray(features[tap.name])
            if x.shape != (n, *tap.shape):
                raise UserInputError(
                    f"tap {tap.name!r} gave shape {x.shape[1:]} per item, the store expects "
                    f"{tap.shape}; re-export the model or write to a new --out store"
                )
            arrays[f"f:{tap.name}"] = x.astype(tap.dtype, copy=False)
        _atomic_write(self.journal / f"b{batch:08d}.npz", lambda f: np.savez(f, **arrays))

    def record_bad(self, item_id: str, digest: str, reason: str) -> None:
        """Note an item that could not be processed (``--skip-bad``); it is kept out of the rows."""
        line = json.dumps({"id": item_id, "digest": digest, "reason": reason}) + "\n"
        with open(self.journal / "bad.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    # -- commit ----------------------------------------------------------------------
    def commit(self) -> CommitSummary:
        """Merge the journal into the store atomically and remove the journal."""
        shards = sorted(self.journal.glob("b*.npz")) if self.journal.exists() else []
        bad = _read_bad(self.journal / "bad.jsonl")
        if not shards and not bad and not self._updates:
            self._cleanup()
            size = self.path.stat().st_size if self.path.exists() else 0
            n = len(self._existing.digests) if self._existing is not None else 0
            return CommitSummary(str(self.path), 0, 0, n, 0, size)
        tmp = Path(f"{self.path}.tmp-{os.getpid()}")
        try:
            added, replaced, total = self._rewrite(tmp, shards, bad)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._cleanup()
        return CommitSummary(
            str(self.path), added, replaced, total, len(bad), self.path.stat().st_size,
            len(self._updates),
        )  # fmt: skip

    def _rewrite(self, tmp: Path, shards: list[Path], bad: dict[str, dict]):
        old = self._existing
        old_ids = old.ids if old is not None else []
        index = {item_id: i for i, item_id in enumerate(old_ids)}
        label_names = list(old.label_names) if old is not None else []
        label_names += [n for n in self.label_names if n not in label_names]
        label_names += [n for n, _ in self._updates.values() if n and n not in label_names]
        # Pass 1: the new ids, in journal (= source) order, and the final label names.
        new_ids: list[str] = []
        replaced = 0
        for shard in shards:
            with np.load(shard, allow_pickle=False) as z:
                for item_id, name, has in zip(
                    z["ids"].tolist(), z["labels"].tolist(), z["has_label"]
                ):
                    if item_id in index:
                        replaced += 1
                    else:
                        index[item_id] = len(old_ids) + len(new_ids)
                        new_ids.append(item_id)
                    if has and name not in label_names:
                        label_names.append(name)
        # Batches may be out of source order (text bucketed by length): rows are not.
        position = {item_id: p for p, item_id in enumerate(self._todo)}
        new_ids.sort(key=lambda item_id: position.get(item_id, len(position)))
        index.update({item_id: len(old_ids) + k for k, item_id in enumerate(new_ids)})
        n_total = len(old_ids) + len(new_ids)
        label_of = {name: i for i, name in enumerate(label_names)}
        with h5py.File(tmp, "w") as dst:
            self._create_layout(dst, n_total, label_names)
            if old is not None:
                _copy_rows(
                    self.path, dst, len(old_ids), [t.name for t in self.fingerprint.tap_infos]
                )
            ids_ds = dst[S.IDS]
            ids_ds[len(old_ids) :] = new_ids
            if self._updates:  # cached rows whose source label or split changed
                rows = np.fromiter((index[i] for i in self._updates), np.int64)
                values = list(self._updates.values())
                lab = np.asarray([label_of[n] if n else -1 for n, _ in values], np.int64)
                split = np.asarray([s for _, s in values], dtype="S8")
                order = np.argsort(rows)
                _write_rows(dst[S.LABELS], rows[order], lab[order])
                _write_rows(dst[S.SPLIT], rows[order], split[order])
            for shard in shards:
                with np.load(shard, allow_pickle=False) as z:
                    rows = np.fromiter((index[i] for i in z["ids"].tolist()), np.int64)
                    order = np.argsort(rows, kind="stable")
                    rows = rows[order]
                    lab = np.where(
                        z["has_label"], [label_of.get(n, -1) for n in z["labels"].tolist()], -1
                    )
                    _write_rows(dst[S.DIGESTS], rows, z["digests"][order])
                    _write_rows(dst[S.LABELS], rows, lab[order])
                    _write_rows(dst[S.SPLIT], rows, z["splits"][order])
                    for tap in self.fingerprint.tap_infos:
                        _write_rows(
                            dst[f"{S.FEATURES}/{tap.name}"], rows, z[f"f:{tap.name}"][order]
                        )
            self._write_bad(dst, old, bad)
            self._write_attrs(dst, old, n_total, len(new_ids), replaced, len(bad))
        return len(new_ids), replaced, n_total

    def _create_layout(self, dst: h5py.File, n: int, label_names: list[str]) -> None:
        text = h5py.string_dtype("utf-8")
        dst.create_dataset(S.IDS, shape=(n,), dtype=text)
        dst.create_dataset(S.DIGESTS, shape=(n,), dtype="S64")
        dst.create_dataset(S.LABELS, shape=(n,), dtype=np.int64, fillvalue=-1)
        dst.create_dataset(S.SPLIT, shape=(n,), dtype="S8")
        dst.create_dataset(S.LABEL_NAMES, data=np.asarray(label_names, dtype=object), dtype=text)
        group = dst.create_group(S.FEATURES)
        for tap in self.fingerprint.tap_infos:
            # Contiguous layout (no chunks, no compression): fast sequential reads and
            # memory-mapped random rows. Compression cost 10-40x for ~10% (by hand).
            ds = group.create_dataset(tap.name, shape=(n, *tap.shape), dtype=tap.dtype)
            for key, value in tap.to_dict().items():
                ds.attrs[key] = (
                    json.dumps(value)
                    if isinstance(value, list)
                    else ("" if value is None else value)
                )

    def _write_bad(self, dst: h5py.File, old, bad: dict[str, dict]) -> None:
        merged = dict(old.bad_records) if old is not None else {}
        merged.update(bad)
        text = h5py.string_dtype("utf-8")
        group = dst.create_group(S.BAD)
        recs = list(merged.values())
        group.create_dataset(
            "ids", data=np.asarray([r["id"] for r in recs], dtype=object), dtype=text
        )
        group.create_dataset("digests", data=np.asarray([r["digest"] for r in recs], dtype="S64"))
        group.create_dataset(
            "reasons", data=np.asarray([r["reason"] for r in recs], dtype=object), dtype=text
        )

    def _write_attrs(self, dst, old, n_total, n_added, n_replaced, n_bad) -> None:
        attrs = dst.attrs
        attrs["format"] = S.FORMAT_NAME
        for key, value in self.fingerprint.to_attrs().items():
            attrs[key] = value
        attrs["embedkit_version"] = __version__
        attrs["created"] = (
            old.attrs.get("created", self._started) if old is not None else self._started
        )
        attrs["updated"] = _now()
        attrs["n_items"] = n_total
        for key, value in self.provenance.items():
            attrs[key] = value if isinstance(value, (int, float)) else str(value)
        runs = json.loads(old.attrs.get("runs", "[]")) if old is not None else []
        runs.append(
            {
                "started": self._started,
                "finished": _now(),
                "added": n_added,
                "replaced": n_replaced,
                "bad": n_bad,
                "relabelled": len(self._updates),
                "embedkit_version": __version__,
                **{k: str(v) for k, v in self.provenance.items()},
            }
        )
        attrs["runs"] = json.dumps(runs)

    # -- helpers ---------------------------------------------------------------------
    def _check(self, stored: S.Fingerprint, where: str) -> None:
        field = stored.first_difference(self.fingerprint)
        if field is not None:
            raise StoreMismatchError(
                where, field, getattr(stored, field), getattr(self.fingerprint, field)
            )

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.journal / "lock", os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.path}: another embedkit process is writing this store; "
                "wait for it to finish"
            ) from None
        self._lock_fd = fd

    def _cleanup(self) -> None:
        if self.journal.exists():
            shutil.rmtree(self.journal, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """Release the journal lock without committing (the journal stays for a resume)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


# -- existing store ---------------------------------------------------------------------
@dataclass
class _Existing:
    fingerprint: S.Fingerprint
    ids: list[str]
    digests: dict[str, str]
    label_names: list[str]
    labels: np.ndarray  # (N,) int64 index into label_names, -1 unlabelled
    splits: np.ndarray  # (N,) S8
    bad: dict[str, str]
    bad_records: dict[str, dict]
    attrs: dict

    def stored_labels(self) -> dict[str, tuple[str | None, str]]:
        """id -> (label name or None, split) of every stored row."""
        names = [None if v < 0 else self.label_names[v] for v in self.labels.tolist()]
        return dict(zip(self.ids, zip(names, [s.decode() for s in self.splits.tolist()])))


def _read_existing(path: Path) -> _Existing | None:
    if not path.exists():
        return None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(
            f"{path}: exists but is not an HDF5 file ({exc}); choose another --out or remove it"
        ) from None
    with f:
        if f.attrs.get("format") != S.FORMAT_NAME:
            raise StoreError(
                f"{path}: is an HDF5 file but not an embedkit store; choose another --out"
            )
        version = int(f.attrs["schema_version"])
        if version > S.SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema version {version} is newer than this embedkit supports "
                f"({S.SCHEMA_VERSION}); upgrade embedkit"
            )
        ids = [S.as_text(v) for v in f[S.IDS][:]]
        digests = [d.decode() for d in f[S.DIGESTS][:]]
        bad_ids = [S.as_text(v) for v in f[f"{S.BAD}/ids"][:]]
        bad_digests = [d.decode() for d in f[f"{S.BAD}/digests"][:]]
        reasons = [S.as_text(v) for v in f[f"{S.BAD}/reasons"][:]]
        return _Existing(
            fingerprint=S.Fingerprint.from_attrs(f.attrs),
            ids=ids,
            digests=dict(zip(ids, digests)),
            label_names=[S.as_text(v) for v in f[S.LABEL_NAMES][:]],
            labels=f[S.LABELS][:],
            splits=f[S.SPLIT][:],
            bad=dict(zip(bad_ids, bad_digests)),
            bad_records={
                i: {"id": i, "digest": d, "reason": r}
                for i, d, r in zip(bad_ids, bad_digests, reasons)
            },
            attrs={k: S.as_text(v) for k, v in f.attrs.items()},
        )


def _copy_rows(src_path: Path, dst: h5py.File, n: int, taps: list[str]) -> None:
    with h5py.File(src_path, "r") as src:
        for name in (S.IDS, S.DIGESTS, S.LABELS, S.SPLIT):
            dst[name][:n] = src[name][:n]
        for tap in taps:
            s, d = src[f"{S.FEATURES}/{tap}"], dst[f"{S.FEATURES}/{tap}"]
            step = max(1, _COPY_ROWS_BYTES // max(1, s.dtype.itemsize * int(np.prod(s.shape[1:]))))
            buf = np.empty((min(step, n), *s.shape[1:]), dtype=s.dtype)
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                view = buf[: hi - lo]
                s.read_direct(view, np.s_[lo:hi])
                d[lo:hi] = view


def _write_rows(ds: h5py.Dataset, rows: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` at sorted ``rows``, as slices where rows are consecutive."""
    if len(rows) == 0:
        return
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for seg in np.split(np.arange(len(rows)), breaks):
        lo, hi = rows[seg[0]], rows[seg[-1]] + 1
        ds[lo:hi] = values[seg[0] : seg[-1] + 1]


def _read_bad(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line torn by a crash
            rec = json.loads(line)
            records[rec["id"]] = rec
    return records


def _check_split(value: str | None) -> str:
    if value is None or value == "":
        return ""
    if value not in S.SPLITS:
        raise UserInputError(f"split {value!r} is not valid; use one of {', '.join(S.SPLITS)}")
    return value


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data`` (the per-item content digest)."""
    return hashlib.sha256(data).hexdigest()


def set_splits(path, splits: Sequence[str]) -> None:
    """Replace the split column of the store at ``path`` atomically.

    The store is copied, the column rewritten in the copy and the copy renamed over the
    original, so a crash leaves the old store intact.
    """
    path = Path(path)
    existing = _read_existing(path)
    if existing is None:
        raise StoreError(f"{path}: no such store; create it with `embedkit extract`")
    values = np.asarray([_check_split(s) for s in splits], dtype="S8")
    if len(values) != len(existing.ids):
        raise UserInputError(f"{len(values)} split values for {len(existing.ids)} rows in {path}")
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            f[S.SPLIT][...] = values
            f.attrs["updated"] = _now()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
