"""The local engine: one ONNX Runtime session in this process.

A thread pool reads and preprocesses the next batches while ONNX Runtime runs the
current one (PIL and tokenizers release the GIL), and a writer thread journals the
results, so decoding, inference and writing overlap. The journal is one pending shard
of every to-do row, which the commit links into the store without copying a row.

    embedkit extract lite0.onnx images/ --out feats.h5 --workers 4
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from embedkit.extract.config import ExtractConfig
from embedkit.extract.engine import Job, Outcome
from embedkit.extract.providers import select_providers
from embedkit.extract.worker import BatchWorker, expected_shapes
from embedkit.progress import Progress
from embedkit.store import PendingRows

PREP_NICE = 10  # preprocessing threads run this much nicer on Linux (see _yield_to_inference)


class LocalEngine:
    """Batches decoded ahead by ``cfg.workers`` threads, run by one session, journaled."""

    def configure(self, cfg: ExtractConfig) -> ExtractConfig:
        select_providers(cfg.device)  # fail early on --device cuda without CUDA
        if cfg.workers is not None:
            return cfg
        # ORT takes every core for the model; decoding needs far fewer
        from joblib import cpu_count  # the cores this process may use (cgroups, affinity)

        return replace(cfg, workers=max(1, min(8, cpu_count() // 2)))

    def start(self, work: BatchWorker) -> None:
        work.start_session()  # loads while the caller scans, tokenises and plans

    def journal(self, job: Job) -> PendingRows:
        """One pending shard of every to-do row: the commit copies no row."""
        rows = job.listing.rows(job.todo.tolist())
        return PendingRows(rows.pop("ids"), job.batch_positions, **rows)

    def run(self, job: Job, batches: list[tuple[int, np.ndarray]], bar: Progress) -> Outcome:
        work, listing, n_workers = job.work, job.listing, job.cfg.workers
        expected, skip_bad = expected_shapes(job.writer.fingerprint), job.cfg.skip_bad
        sink = _WriterThread(job.writer)
        n_computed = n_bad = 0
        with ThreadPoolExecutor(
            n_workers, thread_name_prefix="embedkit-prep", initializer=_yield_to_inference
        ) as pool:
            pending: deque = deque()
            todo = iter(batches)
            try:
                for _ in range(n_workers + 2):  # prefetch window
                    _submit(pool, pending, todo, work.prepare)
                if pending:
                    _ = work.runner  # load the session while the first batches decode
                while pending:
                    b, future = pending.popleft()
                    prepared = future.result()
                    _submit(pool, pending, todo, work.prepare)
                    good, bad, features = work.compute(prepared, expected, skip_bad=skip_bad)
                    for index, reason in bad:  # --skip-bad: recorded, never journaled
                        job.writer.record_bad(listing.ids[index], listing.digests[index], reason)
                    n_bad += len(bad)
                    if good:
                        sink.put(b, good, listing, features)
                        n_computed += len(good)
                    bar.update(len(good) + len(bad), work=work.plan.work(b))
            except BaseException:
                for _, future in pending:
                    future.cancel()
                sink.close(reraise=False)
                raise
            sink.close()
        return Outcome(n_computed, n_bad, work.provider)


def _yield_to_inference() -> None:
    """Lower this preprocessing thread's priority below the ONNX Runtime threads' (Linux).

    ORT runs one intra-op thread per core, and each parallel operator waits for its slowest
    thread: a decoding thread that preempts one of them stalls all. Ten steps nicer, it
    decodes in the gaps between operators and while the session waits for the next batch
    (benchmarks/RESULTS.md, "Images").
    """
    if sys.platform == "linux":  # elsewhere the call would renice the whole process
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):  # a sandbox may forbid it; decoding then competes
            nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + PREP_NICE)
            os.setpriority(os.PRIO_PROCESS, tid, nice)


def _submit(pool, pending: deque, todo, fn) -> None:
    if (nxt := next(todo, None)) is not None:
        pending.append((nxt[0], pool.submit(fn, nxt[1])))  # (batch, future of fn(rows))


class _WriterThread:
    """Journal batches in a background thread; errors resurface in the caller."""

    def __init__(self, writer):
        self.writer = writer
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="embedkit-writer", daemon=True)
        self.thread.start()

    def put(self, b: int, rows: list[int], listing, features) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((b, *listing.rows(rows).values(), features))  # ids, digests, labels, splits

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.writer.write_batch(*item)
                except BaseException as exc:  # handed to the main thread
                    self.error = exc

    def close(self, reraise: bool = True) -> None:
        self.queue.put(None)
        self.thread.join()
        if reraise and self.error is not None:
            raise self.error
