"""The two forms of a store's journal (``STORE.d/journal/``); the writer of the rows picks one.

- :class:`PendingRows` (``embedkit extract``): one pending shard ``<name>.part`` of every
  to-do row, filled batch by batch with ``pwrite`` + ``fdatasync`` and logged in
  ``<name>.done``; the commit links it into ``shards/`` without copying a row.
- :class:`BatchShards` (``extract --engine ray``): one shard file per batch, written by
  whoever computed it; the commit merges small ones into one.

Both resume what an interrupted run journaled for the same to-do list and hand the
commit their shards in to-do order (docs/store-format.md, "Writes").

    with StoreWriter("feats.h5", fingerprint) as w:
        done = w.begin(PendingRows(todo_ids, batches, digests=d, labels=y, splits=s))
        ...                                   # w.write_batch(b, ...) for b not in done
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError
from embedkit.store import format as S
from embedkit.store.files.shards import (
    ShardBuilder,
    check_split,
    content_name,
    disk_errors,
    open_shard,
    write_shard,
)

PART, DONE = ".part", ".done"


def _positions(batches: int | Sequence[Sequence[int]], n: int) -> list[np.ndarray]:
    """Per batch, its positions into the to-do list: ``batches`` as given, or a batch size."""
    if isinstance(batches, int):
        if batches < 1:
            raise UserInputError(f"--batch-size must be at least 1, got {batches}")
        batches = [range(lo, min(n, lo + batches)) for lo in range(0, n, batches)]
    return [np.asarray(list(b), dtype=np.int64) for b in batches]


class BatchShards:
    """A journal of one shard per batch, found again by the ids each holds.

    ``batches`` is a batch size (consecutive slices of ``todo_ids``) or, per batch, the
    positions into ``todo_ids`` it holds; it must be the same for the same ``todo_ids``
    in every run. A journaled shard that matches no batch is discarded.
    """

    def __init__(self, todo_ids: Sequence[str], batches: int | Sequence[Sequence[int]]):
        self.todo_ids = list(todo_ids)
        self.batches = _positions(batches, len(self.todo_ids))
        self.shards: dict[int, Path] = {}

    def open(self, folder: Path, fingerprint: S.Fingerprint) -> set[int]:
        """Find the batches already journaled in ``folder``; (re)called after workers wrote."""
        self.folder, self.fingerprint = Path(folder), fingerprint
        batch_ids = [{self.todo_ids[p] for p in b.tolist()} for b in self.batches]
        batch_of = {item: b for b, ids in enumerate(batch_ids) for item in ids}
        self.shards = {}
        for shard in sorted(self.folder.glob("*.h5")):
            try:
                with open_shard(shard, fingerprint) as f:
                    got = f[S.IDS].asstr()[...].tolist()
            except Exception:  # a shard is renamed only once complete; be safe anyway
                got = []
            b = batch_of.get(got[0]) if got else None
            if b is None or b in self.shards or not set(got) <= batch_ids[b]:
                shard.unlink()
            else:
                self.shards[b] = shard
        return set(self.shards)

    def write(self, batch: int, ids, digests, labels, splits, features) -> None:
        self.shards[batch] = write_shard(
            self.folder, self.fingerprint, list(ids), list(digests), features,
            labels=None if labels is None else [None if v is None else str(v) for v in labels],
            splits=splits,
        )  # fmt: skip

    def finish(self) -> tuple[list[Path], set[str]]:
        """The shards in batch order, and no ids left unwritten (a missing batch is absent)."""
        return [self.shards[b] for b in sorted(self.shards)], set()

    def close(self) -> None:
        pass


class PendingRows:
    """The pending shard of one to-do list cut into ``batches`` (as :class:`BatchShards`).

    ``digests``, ``labels`` and ``splits`` are the to-do rows' (class names and split
    names; None: unlabelled, unset).
    """

    def __init__(self, todo_ids: Sequence[str], batches: int | Sequence[Sequence[int]], *,
                 digests: Sequence[str], labels: Sequence[str | None] | None = None,
                 splits: Sequence[str | None] | None = None):  # fmt: skip
        self.todo_ids = self.ids = list(todo_ids)
        self.batches = _positions(batches, len(self.ids))
        n = len(self.ids)
        self._rows = (digests, [None] * n if labels is None else labels,
                      [None] * n if splits is None else splits)  # fmt: skip
        self.builder: ShardBuilder | None = None
        self.written = np.zeros(n, dtype=bool)
        self.done: set[int] = set()

    def open(self, folder: Path, fingerprint: S.Fingerprint) -> set[int]:
        """Create or resume the pending shard in ``folder``; the batches already journaled."""
        if not self.ids:
            return set()
        self.journal, self.fingerprint, self.taps = Path(folder), fingerprint, fingerprint.tap_infos
        digests, labels, splits = self._rows
        self.digests = np.asarray(digests, dtype="S64")
        self.position = {item: p for p, item in enumerate(self.ids)}
        labels = ["" if v is None else S.as_text(v) for v in labels]
        splits = [check_split(v) for v in splits]
        names = list(dict.fromkeys(v for v in labels if v))
        name = content_name(fingerprint, self.ids, self.digests, labels, splits)
        self.final = self.journal / name
        self.part, self.log = (self.final.with_suffix(suffix) for suffix in (PART, DONE))
        layout = hashlib.sha256(b"".join(b.tobytes() + b"|" for b in self.batches))
        self.layout = layout.hexdigest()[:16]
        for rec in _log_records(self.log):  # rows journaled; batches of this very layout done
            self.written[rec["rows"]] = True
            if rec.get("layout") == self.layout:
                self.done.add(int(rec["batch"]))
        if self.final.exists():  # a commit was killed after finishing the shard
            self.done = set(range(len(self.batches)))
        else:
            args = (fingerprint, self.ids, self.digests, labels, names, splits)
            self.builder = ShardBuilder(self.journal, *args, pending=self.part, name=name)
            self._salvage()
        for path in self._others():  # older journals' files: what could be salvaged was
            if path.suffix in (PART, DONE, ".h5"):
                with contextlib.suppress(OSError):
                    path.unlink()
        return set(self.done)

    # -- resume ----------------------------------------------------------------------
    def _salvage(self) -> None:
        """Copy the rows an older journal (another to-do list) computed for unchanged items."""
        for other in self._others():
            if other.suffix not in (PART, ".h5"):
                continue
            try:
                with open_shard(other, self.fingerprint) as f:
                    ids = f[S.IDS].asstr()[...].tolist()
                    digests = f[S.DIGESTS][...]
                    log = other.with_suffix(DONE)
                    ok = np.zeros(len(ids), dtype=bool)
                    if log.exists():
                        for rec in _log_records(log):
                            ok[rec["rows"]] = True
                    else:  # a batch shard of the scale-out journal: every row computed
                        ok[:] = other.suffix == ".h5"
                    at = {i: r for r, i in enumerate(ids) if ok[r]}
                    for b, rows in enumerate(self.batches):
                        if b not in self.done and len(rows):
                            self._copy_batch(b, np.sort(rows), at, digests, f)
            except Exception:  # an unreadable leftover is only lost work
                continue

    def _copy_batch(self, b: int, rows: np.ndarray, at: dict, digests, f) -> None:
        src = np.asarray([at.get(self.ids[p], -1) for p in rows.tolist()], dtype=np.int64)
        if src.min() < 0 or (digests[src] != self.digests[rows]).any():
            return  # an item of the batch is new or changed: the batch is computed again
        order = np.argsort(src)  # h5py reads increasing rows
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        feats = {t.name: f[f"{S.FEATURES}/{t.name}"][src[order]][back] for t in self.taps}
        self._write_rows(b, rows, feats)

    def _others(self) -> list[Path]:
        keep = {self.final.name, self.part.name, self.log.name}
        return [p for p in self.journal.iterdir() if p.name not in keep and p.is_file()]

    # -- journaling ------------------------------------------------------------------
    def write(self, batch: int, ids: Sequence[str], digests, labels, splits, features) -> None:
        """Write batch ``batch``'s rows (``ids``, in any order; their digests, labels and
        splits are known) and mark the batch done."""
        rows = np.asarray([self.position[i] for i in ids], dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        self._write_rows(batch, rows[order], {k: v[order] for k, v in features.items()})

    def _write_rows(self, batch: int, rows: np.ndarray, features) -> None:
        """``rows`` ascending; ``features[tap]`` (len(rows), *shape) in that order."""
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip([0, *breaks.tolist()], [*breaks.tolist(), len(rows)]):
            for tap in self.taps:
                self.builder.write(tap, int(rows[lo]), np.asarray(features[tap.name][lo:hi]))
        self.builder.sync()  # the rows are durable before the log line is even written
        line = json.dumps({"layout": self.layout, "batch": batch, "rows": rows.tolist()}) + "\n"
        with disk_errors(self.log, len(line)), open(self.log, "a", encoding="utf-8") as f:
            f.write(line)  # no fsync: a line lost to a power cut only recomputes its batch
        self.written[rows] = True
        self.done.add(batch)

    # -- commit ----------------------------------------------------------------------
    def finish(self) -> tuple[list[Path], set[str]]:
        """The finished shard (none when no row was written) and the ids never written."""
        unwritten = {self.ids[p] for p in np.flatnonzero(~self.written).tolist()}
        if not self.written.any():
            return [], unwritten
        if not self.final.exists():
            self.builder.finish(self.final)
            self.builder = None
        return [self.final], unwritten

    def close(self) -> None:
        if self.builder is not None:
            self.builder.close()


def _log_records(path: Path) -> list[dict]:
    records = []
    for rec in read_jsonl(path):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            records.append({**rec, "rows": [int(r) for r in rec["rows"]]})
    return records


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of ``path``, one a line (none when it is missing); a line torn by a
    crash is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return [r for r in records if isinstance(r, dict)]


Journal = BatchShards | PendingRows
