"""The extract journal's rows: one pending shard that becomes the commit's shard as it is.

``StoreWriter.begin(todo, batches, digests=..., labels=..., splits=...)`` creates
``STORE.d/journal/<name>.part``: a shard of every to-do row, its row metadata written
and its feature space allocated but not filled (a sparse file), named after its content
like any shard. Each finished batch writes its rows at their to-do positions with
``pwrite``, ``fdatasync``s, then appends one line to ``<name>.done``; a SIGKILL loses
only the batches in flight. The commit renames the part to ``<name>.h5`` (still in the
journal, so a kill before the index is replaced keeps it for the re-run) and links it
into ``shards/``: no row is copied, so a commit needs the new rows' shard and the new
index on disk, not twice the rows.

    rows = PendingRows(journal, fingerprint, ids, digests, labels, splits, batches)
    rows.write(b, batch_ids, {"pool": X})     # per batch; rows.done: batches journaled
    shard, unwritten = rows.finish()          # for commit_locked(..., skip=unwritten)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedkit.store import format as S
from embedkit.store.files.shards import (
    ShardBuilder,
    check_split,
    content_name,
    disk_errors,
    open_shard,
)

PART, DONE = ".part", ".done"


class PendingRows:
    """The pending shard of one to-do list cut into ``batches`` (positions per batch)."""

    def __init__(self, journal: Path, fingerprint, ids, digests, labels, splits, batches):
        self.journal = Path(journal)
        self.fingerprint = fingerprint
        self.ids = list(ids)
        self.digests = np.asarray(digests, dtype="S64")
        self.batches = [np.asarray(list(b), dtype=np.int64) for b in batches]
        self.position = {item: p for p, item in enumerate(self.ids)}
        labels = ["" if v is None else S.as_text(v) for v in labels]
        splits = [check_split(v) for v in splits]
        names = list(dict.fromkeys(v for v in labels if v))
        self.builder: ShardBuilder | None = None
        args = (fingerprint, self.ids, self.digests, labels, names, splits)
        name = content_name(fingerprint, self.ids, self.digests, labels, splits)
        stem = name.removesuffix(".h5")
        self.final = self.journal / name
        self.part = self.journal / (stem + PART)
        self.log = self.journal / (stem + DONE)
        layout = hashlib.sha256(b"".join(b.tobytes() + b"|" for b in self.batches))
        self.layout = layout.hexdigest()[:16]
        self.written = np.zeros(len(self.ids), dtype=bool)
        self.done: set[int] = set()
        self._read_log()
        if self.final.exists():  # a commit was killed after finishing the shard
            self.done = set(range(len(self.batches)))
        else:
            self.builder = ShardBuilder(self.journal, *args, pending=self.part, name=name)
            self._salvage()
        self._drop_others()

    # -- resume ----------------------------------------------------------------------
    def _read_log(self) -> None:
        for rec in _log_records(self.log):
            self.written[rec["rows"]] = True
            if rec.get("layout") == self.layout:
                self.done.add(int(rec["batch"]))

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
        feats = {t.name: f[f"{S.FEATURES}/{t.name}"][src[order]][back] for t in self._taps}
        self._write_rows(b, rows, feats)

    def _others(self) -> list[Path]:
        keep = {self.final.name, self.part.name, self.log.name}
        return [p for p in self.journal.iterdir() if p.name not in keep and p.is_file()]

    def _drop_others(self) -> None:
        for path in self._others():
            if path.suffix in (PART, DONE, ".h5"):
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- journaling ------------------------------------------------------------------
    @property
    def _taps(self):
        return self.fingerprint.tap_infos

    def write(self, batch: int, ids: Sequence[str], features: dict[str, np.ndarray]) -> None:
        """Write batch ``batch``'s rows (``ids``, in any order) and mark the batch done."""
        rows = np.asarray([self.position[i] for i in ids], dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        self._write_rows(batch, rows[order], {k: v[order] for k, v in features.items()})

    def _write_rows(self, batch: int, rows: np.ndarray, features) -> None:
        """``rows`` ascending; ``features[tap]`` (len(rows), *shape) in that order."""
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip([0, *breaks.tolist()], [*breaks.tolist(), len(rows)]):
            for tap in self._taps:
                self.builder.write(tap, int(rows[lo]), np.asarray(features[tap.name][lo:hi]))
        self.builder.sync()  # the rows are durable before the log line is even written
        line = json.dumps({"layout": self.layout, "batch": batch, "rows": rows.tolist()}) + "\n"
        with disk_errors(self.log, len(line)), open(self.log, "a", encoding="utf-8") as f:
            f.write(line)  # no fsync: a line lost to a power cut only recomputes its batch
        self.written[rows] = True
        self.done.add(batch)

    # -- commit ----------------------------------------------------------------------
    def finish(self) -> tuple[Path | None, set[str]]:
        """The finished shard (None when no row was written) and the ids never written."""
        unwritten = {self.ids[p] for p in np.flatnonzero(~self.written).tolist()}
        if not self.written.any():
            return None, unwritten
        if not self.final.exists():
            self.builder.finish(self.final)
            self.builder = None
        return self.final, unwritten

    def close(self) -> None:
        if self.builder is not None:
            self.builder.close()


def _log_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):  # a line torn by a crash
            rec = json.loads(line)
            rec["rows"] = [int(r) for r in rec["rows"]]
            records.append(rec)
    return records
