"""The one commit path: shard files in, one atomic index replacement out.

Every change goes through :class:`WriterLock` (taken before the state is read) and ends
with one new version (:func:`~embedkit.store.txn.index.write_index`), so a kill at any point
leaves the old store or the new one; the next writer removes the temporary files it left.

    commit_shards("feats.h5", [shard_a, shard_b], fingerprint)   # in this row order
    compact("feats.h5")                                            # one shard again
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedkit import __version__
from embedkit.store import format as S
from embedkit.store.files.integrity import RECOMPUTE, marked_shards
from embedkit.store.files.place import ShardMeta, place_all
from embedkit.store.files.shards import id_hashes
from embedkit.store.read.state import State, extend_segments, segments_of, store_nbytes
from embedkit.store.txn.begin import RowLookup, empty_state, prepare, prune
from embedkit.store.txn.compact import compact_locked
from embedkit.store.txn.index import write_index
from embedkit.store.txn.lock import LOCK_TIMEOUT, WriterLock, crash_point, now

MAX_SHARDS = 64  # automatic compaction merges the smallest shards past this count
MAX_SEGMENTS = 4096  # ... or past this many row runs (scattered replaced rows)


@dataclass(frozen=True)
class CommitSummary:
    """What a commit did to the store."""

    path: str
    n_added: int  # new rows
    n_replaced: int  # existing ids whose content changed and were recomputed
    n_total: int  # rows in the store after the commit
    n_bad: int  # items recorded as bad by this run
    nbytes: int  # index + shard bytes after the commit
    n_relabelled: int = 0  # rows already there whose label now follows their source


def commit_shards(
    store,
    shards: Sequence[str | Path],
    fingerprint: S.Fingerprint,
    *,
    provenance: dict | None = None,
    label_names: Sequence[str] | None = None,
    timeout: float = LOCK_TIMEOUT,
) -> CommitSummary:
    """Add shard files (from :func:`write_shard`) to the store, in the given row order.

    Takes the writer lock, reads the store, and replaces its index atomically. Ids
    already in the store are replaced in place (rows keep their first-added order); new
    ids are appended. The input files are left where they are; shards in the store's own
    folder are linked, not copied.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.store import Fingerprint, TapInfo, FeatureStore, write_shard
    >>> fp = Fingerprint.create("arrays", [TapInfo("pool", (2,))], {"kind": "features"})
    >>> d = tempfile.mkdtemp()
    >>> a = write_shard(d, fp, ["a", "b"], ["0" * 64] * 2, {"pool": np.zeros((2, 2), "f4")})
    >>> b = write_shard(d, fp, ["c"], ["1" * 64], {"pool": np.ones((1, 2), "f4")})
    >>> commit_shards(os.path.join(d, "s.h5"), [a, b], fp).n_total
    3
    >>> FeatureStore(os.path.join(d, "s.h5")).ids().tolist()
    ['a', 'b', 'c']
    """
    store = Path(store)
    with WriterLock(store, timeout=timeout, what="committing") as lock:
        state = prepare(store, lock, fingerprint=fingerprint)
        known = RowLookup(store, state)
        return commit_locked(
            store, state, known, [Path(p) for p in shards], fingerprint,
            provenance=provenance, label_names=label_names,
        )  # fmt: skip


def commit_locked(
    store: Path,
    state: State | None,
    known: RowLookup,
    shards: list[Path],
    fingerprint: S.Fingerprint,
    *,
    provenance: dict | None = None,
    label_names: Sequence[str] | None = None,
    bad: dict[str, dict] | None = None,
    started: str | None = None,
    order: Sequence[str] | None = None,
    skip: Collection[str] = (),
    relabel: dict[int, str | None] | None = None,
    operation: str = "commit",
) -> CommitSummary:
    """The one commit path; the caller holds the lock and read ``state`` under it.

    New ids are appended in shard order, or in the order of ``order`` (ids) when given.
    Shard rows whose id is in ``skip`` (never written: bad items) are left out.
    ``operation`` names the change in ``store log`` (``extract``, ``label``, ``commit``).
    ``relabel`` maps store rows to their new class name (None: unlabelled).
    """
    bad, relabel = dict(bad or {}), dict(relabel or {})
    if not shards and not bad and not relabel:
        n = state.n if state is not None else 0
        return CommitSummary(str(store), 0, 0, n, 0, store_nbytes(store, state))
    metas = [ShardMeta.read(p, fingerprint) for p in shards]
    state = state or empty_state(fingerprint, started)
    names = list(dict.fromkeys([*state.label_names, *(label_names or [])]))
    index_bytes = 16 * sum(len(m.ids) for m in metas) + 200 * len(state.segments) + (64 << 10)
    final = place_all(store, metas, fingerprint, names, index_bytes)
    crash_point("shards-written")
    labels, split = state.labels.copy(), state.split.copy()
    row_of: dict[str, int] = {}  # store row of each id in this commit that is already there
    for _, meta in final:
        found = known.rows(meta.hashes if meta.hashes is not None else id_hashes(meta.ids))
        row_of.update((i, r) for i, r in zip(meta.ids, found.tolist()) if r >= 0)
    label_of = {n: i for i, n in enumerate(names)}  # a new class name: the next index
    for row, name in relabel.items():  # before the new rows: they may replace these rows
        labels[row] = label_of.setdefault(name, len(label_of)) if name else -1
    shard_names = [*state.shards, *(name for name, _ in final)]
    new_rows: dict[str, tuple] = {}  # id -> (shard, src, label, split) of each appended row
    rep_rows: list[tuple] = []  # (row, shard, src, label, split) of each replaced row
    for k, (_, meta) in enumerate(final, start=len(state.shards)):
        for r, (item, lab, sp) in enumerate(zip(meta.ids, meta.labels, meta.split)):
            if item in skip:
                continue
            values = (k, r, label_of.setdefault(lab, len(label_of)) if lab else -1, sp)
            if item in row_of:
                rep_rows.append((row_of[item], *values))
            else:  # the same id twice in this commit: the later row, at the first one's place
                new_rows[item] = values
    names = list(label_of)
    added, replaced = len(new_rows), len(rep_rows)
    appended = list(new_rows)  # ids in shard order, or in the order of ``order``
    if order is not None:  # e.g. text batches bucketed by length
        rank = {item: p for p, item in enumerate(order)}
        appended.sort(key=lambda item: rank.get(item, len(rank)))
    new_cols = list(zip(*(new_rows[i] for i in appended))) or [(), (), (), ()]
    new_shard, new_src = (np.asarray(c, dtype=np.int64) for c in new_cols[:2])  # (added,) each
    if replaced:  # per-row (shard, src) of the whole store: O(N)
        shard_of, src_of = state.rows_of()  # (N,) each
        rep = list(zip(*rep_rows))  # row, shard, src, label, split
        rows = np.asarray(rep[0], dtype=np.int64)
        shard_of[rows], src_of[rows] = rep[1], rep[2]
        labels[rows], split[rows] = rep[3], np.asarray(rep[4], dtype="S8")
        segments = segments_of(
            np.concatenate([shard_of, new_shard]), np.concatenate([src_of, new_src])
        )
    else:  # appends only: the old row map plus the new rows' runs
        segments = extend_segments(state.segments, new_shard, new_src)
    labels = np.concatenate([labels, np.asarray(new_cols[2], dtype=np.int64)])
    split = np.concatenate([split, np.asarray(new_cols[3], dtype="S8")])
    committed = {i for _, meta in final for i in meta.ids if i not in skip}
    merged_bad = {k: v for k, v in {**state.bad, **bad}.items() if k not in committed}
    runs = json.loads(state.attrs.get("runs", "[]"))
    runs.append(
        {
            "started": started or now(),
            "finished": now(),
            "added": added,
            "replaced": replaced,
            "bad": len(bad),
            "relabelled": len(relabel),
            "embedkit_version": __version__,
            **{k: str(v) for k, v in (provenance or {}).items()},
        }
    )
    attrs = dict(state.attrs)
    for key, value in (provenance or {}).items():
        attrs[key] = value if isinstance(value, (int, float)) else str(value)
    attrs.update(runs=json.dumps(runs), updated=now(), embedkit_version=__version__)
    attrs.pop(RECOMPUTE, None)  # set again below for marked shards still in use
    new = prune(State(fingerprint, shard_names, segments, labels, split, names, merged_bad, attrs))
    placed = {name for name, _ in final}  # written anew by this commit: sound
    still = [n for n in marked_shards(state.attrs) if n in new.shards and n not in placed]
    if still:
        new.attrs[RECOMPUTE] = json.dumps(still)
    write_index(store, new, base=state, operation=operation, replaced=replaced)
    crash_point("index-written")
    if len(new.shards) > MAX_SHARDS or len(new.segments) > MAX_SEGMENTS:
        new = compact_locked(store, new, keep=MAX_SHARDS // 2)
    nbytes = store_nbytes(store, new)
    return CommitSummary(str(store), added, replaced, new.n, len(bad), nbytes, len(relabel))
