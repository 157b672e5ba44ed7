"""Crash-safe, incremental writes into the feature store (what ``embedkit extract`` uses).

A :class:`StoreWriter` takes the store's writer lock, then reads the store. New rows go
to a journal (:mod:`embedkit.store.txn.journal`), so a SIGKILL loses at most the batches
in flight; ``commit`` hands the journal's shards to the one commit path
(:func:`~embedkit.store.txn.commit.commit_locked`).

    with StoreWriter("feats.h5", fingerprint, provenance={"provider": "CPU"}) as w:
        todo = w.plan(ids, digests)            # positions that need computing
        done = w.begin(BatchShards([ids[i] for i in todo], 64))  # batches already journaled
        for b, batch in enumerate(batches):
            if b not in done:
                w.write_batch(b, batch_ids, batch_digests, labels, splits, {"pool": feats})
        w.commit()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from embedkit.errors import StoreError, UserInputError
from embedkit.store import format as S
from embedkit.store.files.integrity import marked_shards, no_store
from embedkit.store.files.shards import check_split, disk_errors, id_hashes, write_atomic
from embedkit.store.txn.begin import RowLookup, check_fingerprint, prepare
from embedkit.store.txn.commit import CommitSummary, commit_locked
from embedkit.store.txn.index import write_index
from embedkit.store.txn.journal import Journal, read_jsonl
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock, crash_point, now


class StoreWriter:
    """Add rows to a feature store, resumably and atomically.

    Parameters
    ----------
    path : str or Path
        The store (index file). It is created by the first ``commit``.
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
    timeout : float
        Seconds to wait for another writer of the same store before refusing.
    operation : str
        What the commit is called in ``embedkit store log`` (``extract``, ``label``).

    The writer holds the store's lock from construction until :meth:`commit` or
    :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(
        self,
        path,
        fingerprint: S.Fingerprint,
        *,
        provenance: dict | None = None,
        label_names: Sequence[str] | None = None,
        timeout: float = LOCK_TIMEOUT,
        operation: str = "extract",
    ):
        self.path = Path(path)
        self.operation = operation
        self.label_names = [str(n) for n in (label_names or [])]
        self.fingerprint = fingerprint
        self.provenance = dict(provenance or {})
        self.journal = S.journal_dir(self.path)
        self._pending: Journal | None = None  # the journal begin() opened
        self._relabel: dict[int, str | None] = {}  # store row -> its source's label now
        self._started = now()
        self._lock = WriterLock(self.path, timeout=timeout, what="extracting").acquire()
        try:
            self._state = prepare(self.path, self._lock, fingerprint=fingerprint)
            self._lookup = RowLookup(self.path, self._state)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- planning --------------------------------------------------------------------
    def plan(
        self, ids: Sequence[str], digests: Sequence[str], *, where: str | None = None
    ) -> np.ndarray:
        """Positions into ``ids`` that need computing, in source order.

        An item needs computing when its id is not in the store, or its digest changed.
        Items recorded as bad with the same digest are not retried. ``where`` (the source)
        is named when an id occurs twice.
        """
        if len(ids) != len(digests):
            raise ValueError("ids and digests must have the same length")
        seen: set[str] = set()
        for item_id in ids:
            if item_id in seen:
                source = f"{where}: " if where else ""
                raise UserInputError(
                    f"{source}item id {item_id!r} occurs twice in the source (ids are compared "
                    "as text once parsed: 1 and 1.0 are both '1'); ids must be unique"
                )
            seen.add(item_id)
        rows = self._lookup.rows(id_hashes(ids))
        digests = np.asarray(digests, dtype="S64")
        known = np.zeros(len(ids), dtype=bool)
        found = rows >= 0
        known[found] = self._lookup.digests(rows[found]) == digests[found]
        known &= ~self._in_marked_shards(rows)  # rows of damaged shards (store verify --repair)
        bad = {i: r["digest"] for i, r in self._state.bad.items()} if self._state else {}
        if bad:
            known |= [bad.get(i) == d for i, d in zip(ids, digests.astype(str).tolist())]
        return np.flatnonzero(~known).astype(np.int64)

    def _in_marked_shards(self, rows: np.ndarray) -> np.ndarray:
        """Which store ``rows`` (-1: not in the store) lie in shards marked for recompute."""
        marked = set(marked_shards(self._state.attrs)) if self._state is not None else set()
        out = np.zeros(len(rows), dtype=bool)
        if marked:
            ks = [k for k, name in enumerate(self._state.shards) if name in marked]
            shard_of = self._state.rows_of()[0]
            out[rows >= 0] = np.isin(shard_of[rows[rows >= 0]], ks)
        return out

    def relabel(self, ids: Sequence[str], labels: Sequence[str | None]) -> int:
        """Give rows already in the store the labels their source gives now.

        For items that are not recomputed (same content): a row whose stored class differs
        from ``labels`` (class names; None = unlabelled) gets the new one at :meth:`commit`,
        in the same index change as the new rows; no feature is touched. New class names
        are appended to ``label_names``; names no row uses any more are kept, so a class
        keeps its index. Ids not in the store are ignored. Returns the rows that change.
        """
        if self._state is None:  # no store yet: no row to relabel
            return 0
        names = self._state.label_names
        for row, label in zip(self._lookup.rows(id_hashes(ids)).tolist(), labels):
            code = int(self._state.labels[row]) if row >= 0 else -1
            new = None if label is None else str(label)
            if row >= 0 and new != (names[code] if code >= 0 else None):
                self._relabel[row] = new
        return len(self._relabel)

    # -- the journal -----------------------------------------------------------------
    def begin(self, journal: Journal) -> set[int]:
        """Open ``journal`` (a :class:`~embedkit.store.txn.journal.PendingRows` or
        :class:`~embedkit.store.txn.journal.BatchShards`) for the rows to add; returns the
        batches an interrupted run already journaled for the same to-do list (to skip)."""
        self.journal.mkdir(parents=True, exist_ok=True)
        manifest = self.journal / "manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            check_fingerprint(
                S.Fingerprint.from_attrs(old["fingerprint"]), self.fingerprint, self.journal
            )
        text = json.dumps({"fingerprint": self.fingerprint.to_attrs(), "created": self._started})
        write_atomic(manifest, text.encode("utf-8"))  # a torn manifest would block resumes
        self._pending = journal
        return journal.open(self.journal, self.fingerprint)

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
        if len(ids) == 0:
            return
        if self._pending is None:
            raise StoreError(f"{self.path}: write_batch before begin; open a journal first")
        for tap in self.fingerprint.tap_infos:
            if tap.name not in features:
                raise StoreError(f"batch {batch} has no features for tap {tap.name!r}")
        feats = {t.name: features[t.name] for t in self.fingerprint.tap_infos}
        self._pending.write(batch, ids, digests, labels, splits, feats)
        crash_point(f"batch-{batch}")

    def record_bad(self, item_id: str, digest: str, reason: str) -> None:
        """Note an item that could not be processed (``--skip-bad``); it is kept out of the rows."""
        line = json.dumps({"id": item_id, "digest": digest, "reason": reason}) + "\n"
        path = self.journal / "bad.jsonl"
        with disk_errors(path, len(line)), open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    # -- commit ----------------------------------------------------------------------
    def commit(self) -> CommitSummary:
        """Add the journaled rows to the store (one atomic index change), then drop the journal."""
        if self._lock is None:
            raise StoreError(f"{self.path}: this writer is closed; open a new StoreWriter")
        # bad items journaled by record_bad, then by workers' journal_bad, batch by batch
        per_batch = sorted(self.journal.glob("bad-*.jsonl"), key=lambda p: int(p.stem[4:]))
        records = [r for p in [self.journal / "bad.jsonl", *per_batch] for r in read_jsonl(p)]
        bad = {r["id"]: r for r in records if "id" in r}
        pending = self._pending
        order = pending.todo_ids if pending is not None else []
        try:
            shards, skip = pending.finish() if pending is not None else ([], set())
            summary = commit_locked(
                self.path, self._state, self._lookup, shards, self.fingerprint,
                provenance=self.provenance, label_names=self.label_names, bad=bad,
                started=self._started, order=order, skip=skip, relabel=self._relabel,
                operation=self.operation,
            )  # fmt: skip
            crash_point("before-journal-removed")
            shutil.rmtree(self.journal, ignore_errors=True)
        finally:
            self.close()
        return summary

    def close(self) -> None:
        """Release the writer lock without committing (the journal stays for a resume)."""
        if getattr(self, "_pending", None) is not None:
            self._pending.close()
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
            self._lock = None


def journal_bad(journal, batch: int, records: Sequence[tuple[str, str, str]]) -> Path:
    """Journal batch ``batch``'s bad items ``(id, digest, reason)`` from a worker process
    (which holds no :class:`StoreWriter`): ``bad-<batch>.jsonl``, written atomically before
    the batch's shard, so a journaled shard always has its bad items beside it."""
    path = Path(journal) / f"bad-{int(batch)}.jsonl"
    text = "".join(json.dumps({"id": i, "digest": d, "reason": r}) + "\n" for i, d, r in records)
    return write_atomic(path, text.encode("utf-8"))


def set_splits(
    path, splits: Sequence[str], *, timeout: float = LOCK_TIMEOUT, lock: WriterLock | None = None
) -> None:
    """Replace the split column of the store at ``path`` atomically.

    Takes the writer lock (or uses ``lock``, already held by a caller that read the store
    under it), then writes a new index with the new column and renames it over the old
    one: the shards are not touched, so this costs a few bytes per row.
    """
    path = Path(path)
    if not path.exists():  # before the lock, which would create the store's folder
        raise StoreError(no_store(path))
    values = np.asarray([check_split(s) for s in splits], dtype="S8")
    held = lock if lock is not None else WriterLock(path, timeout=timeout, what="splitting")
    with contextlib.nullcontext(held) if lock is not None else held:
        state = prepare(path, held, required=True)
        if len(values) != state.n:
            raise UserInputError(f"{len(values)} split values for {state.n} rows in {path}")
        new = replace(state, split=values, attrs={**state.attrs, "updated": now()})
        write_index(path, new, base=state, operation="split")
