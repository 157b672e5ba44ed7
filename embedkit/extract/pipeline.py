"""Run an ONNX graph over a source into the feature store, resumably.

A thread pool reads and preprocesses the next batches while ONNX Runtime runs the
current one (PIL and tokenizers release the GIL), and a writer thread journals the
results, so decoding, inference and writing overlap. Batch ``b`` always holds the same
items, so a run killed at any point and started again gives a bit-identical store.
With ``engine="ray"`` the same batches run in Ray actors (``ray_engine.py``).

    embedkit extract lite0.onnx images/ --out feats.h5 --batch-size 64
    embedkit extract lite0.onnx images/ --out feats.h5 --engine ray --address auto
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.contract import BACKBONE, ImageSpec
from embedkit.errors import UserInputError, require
from embedkit.extract.batching import Plan, plan_batches
from embedkit.extract.config import ExtractConfig, ExtractSummary
from embedkit.extract.model import ModelSpec, load_model
from embedkit.extract.opening import open_source
from embedkit.extract.preprocess import (
    BadItem,
    TextPreprocessor,
    check_item_shape,
)
from embedkit.extract.providers import Runner, select_providers
from embedkit.extract.sources import ArraySource, Listing, Source, id_from_name
from embedkit.extract.worker import BatchWorker, expected_shapes
from embedkit.progress import Progress

PREP_NICE = 10  # preprocessing threads run this much nicer on Linux (see _yield_to_inference)


def extract(
    model: str | Path,
    source: Any,
    out: str | Path,
    config: ExtractConfig | None = None,
    **options: Any,
) -> ExtractSummary:
    """Run ``model`` over ``source`` and add the features to the store ``out``.

    Items already in the store with the same content are skipped; an interrupted run
    resumes where it stopped. The store is replaced atomically at the end, so an error
    or a kill never leaves it half written.

    Parameters
    ----------
    model : str or Path
        Any ONNX file; ``embedkit.*`` metadata (taps, preprocessing, tokenizer) is used
        when present.
    source : str, Path, Source or table
        An image folder, ``.txt``, ``.csv``/``.jsonl``, ``.npy``, ``.parquet`` (a file or a
        folder of parts), ``.arrow``/``.feather``, a ``save_to_disk`` folder, or an in-memory
        ``datasets.Dataset``, pandas ``DataFrame`` or ``pyarrow.Table`` (see
        :func:`open_source`).
    out : str or Path
        The HDF5 store to create or extend.
    config : ExtractConfig, optional
        Options; keyword ``options`` override its fields (``batch_size=64``, ...).

    Returns
    -------
    ExtractSummary

    Examples
    --------
    >>> s = extract("lite0.onnx", "images/", "feats.h5", batch_size=64)  # doctest: +SKIP
    >>> print(s)  # doctest: +SKIP
    feats.h5: computed 1000 items, 0 cached, 0 resumed, 0 bad in 31.2 s (32.1 items/s, ...
    """
    cfg = (config or ExtractConfig()).with_options(**options)
    if cfg.workers is None and cfg.engine == "local":
        # ORT takes every core for the model; decoding needs far fewer
        from joblib import cpu_count  # the cores this process may use (cgroups, affinity)

        cfg = replace(cfg, workers=max(1, min(8, cpu_count() // 2)))
    return _Extraction(model, source, out, cfg).run()


class _Extraction:
    def __init__(self, model, source, out, cfg: ExtractConfig):
        self.start = time.perf_counter()
        self.cfg = cfg
        if cfg.engine == "local":  # the Ray engine checks the device in its actors
            select_providers(cfg.device)  # fail early on --device cuda without CUDA
        else:  # before the store is touched
            for module in ("ray", "ray.data"):
                require(module, "ray", "--engine ray")
        self.model: ModelSpec = load_model(model, preprocess=cfg.preprocess, taps=cfg.taps)
        self.source = (
            source
            if isinstance(source, Source)
            else open_source(
                source,
                text_column=cfg.text_column,
                label_column=cfg.label_column,
                labels=cfg.labels,
                limit=cfg.limit,
                column=cfg.column,
                id_column=cfg.id_column,
                media="image" if isinstance(self.model.preprocess, ImageSpec) else "text",
            )
        )
        self.out = Path(out)
        self.work = BatchWorker(self.model, self.source, device=cfg.device, dtype=cfg.dtype)
        self.pre = self.work.pre
        _check_source_shape(self.model, self.pre, self.source)

    @property
    def runner(self) -> Runner:
        return self.work.runner

    def run(self) -> ExtractSummary:
        try:
            return self._run()
        finally:
            self.work.settle()  # a session start_session began: never left loading

    def _run(self) -> ExtractSummary:
        from embedkit.store import Fingerprint, StoreWriter

        local = self.cfg.engine == "local"
        if local and not self.out.exists():  # a new store: the session loads while we scan
            self.work.start_session()
        listing = self.source.scan().tagged(self.cfg.split, self.cfg.id_prefix)
        taps = self._tap_infos(listing)
        fingerprint = Fingerprint.create(
            self.model.sha256, taps, self.pre.spec.to_dict(), self.cfg.dtype
        )
        writer = StoreWriter(
            self.out,
            fingerprint,
            provenance={
                # absolute: train and predict may run in another folder (paths may not be UTF-8)
                "model": id_from_name(os.path.abspath(self.model.path)),
                "backbone": id_from_name(
                    str(self.model.metadata.get(BACKBONE, self.model.path.stem))
                ),
                "source": id_from_name(str(self.source.path)),
            },
            label_names=listing.label_names,
        )
        todo = writer.plan(listing.ids, listing.digests, where=str(self.source.path))
        if local and len(todo):  # loads while we tokenise and plan
            self.work.start_session()
        if any(label is not None for label in listing.labels):  # cached rows follow the source
            cached = np.setdiff1d(np.arange(len(listing)), todo).tolist()
            writer.relabel([listing.ids[i] for i in cached], [listing.labels[i] for i in cached])
        self.work.plan = self._plan(todo)
        journal = ([listing.ids[i] for i in todo], self.work.plan.positions(todo))  # begin's args
        rows = {}  # local runs journal into one pending shard: the commit copies no row
        if self.cfg.engine == "local":
            rows = {
                key: [getattr(listing, key)[i] for i in todo.tolist()]
                for key in ("digests", "labels", "splits")
            }
        done = writer.begin(*journal, **rows)
        batches = [(b, rows) for b, rows in enumerate(self.work.plan.batches) if b not in done]
        n_resumed = len(todo) - sum(len(rows) for _, rows in batches)
        plan = self.work.plan
        bar = Progress("extract", len(todo), initial=n_resumed, enabled=self.cfg.progress,
                       work_total=sum(plan.work(b) for b, _ in batches))  # fmt: skip
        try:
            with bar:
                if self.cfg.engine == "ray":
                    from embedkit.extract.ray_engine import run_on_ray

                    n_computed, n_bad, provider = run_on_ray(
                        self.work, batches, listing, writer, self.cfg, bar, journal
                    )
                else:
                    n_computed, n_bad = self._run_batches(batches, listing, writer, bar)
                    provider = None
        except BaseException:
            writer.close()  # keep the journal: the next run resumes from it
            raise
        provider = provider or self.work.provider
        if provider is not None:  # recorded in the store's attributes and run log
            writer.provenance["provider"] = provider
        commit = writer.commit()
        return ExtractSummary(
            path=str(self.out),
            n_items=len(listing),
            n_computed=n_computed,
            n_cached=len(listing) - len(todo),
            n_resumed=n_resumed,
            n_bad=n_bad,
            seconds=time.perf_counter() - self.start,
            n_total=commit.n_total,
            nbytes=commit.nbytes,
            provider=provider or "none",
            n_relabelled=commit.n_relabelled,
        )

    def _plan(self, todo: np.ndarray) -> Plan:
        """Text: tokenised once and bucketed by length; anything else: fixed-size batches."""
        if not isinstance(self.pre, TextPreprocessor):
            return plan_batches(todo, self.cfg.batch_size)
        texts = [self.source.read(i) for i in todo.tolist()]
        return plan_batches(todo, self.cfg.batch_size, texts=texts, pre=self.pre)

    def _tap_infos(self, listing: Listing):
        """The taps with their shapes; a shape the graph leaves dynamic is probed on one item."""
        shapes = {t.name: t.shape for t in self.model.taps}
        if any(s is None for s in shapes.values()):
            outputs = self.runner.run(self.pre.collate([self._probe_item(listing)]))
            shapes = {t.name: tuple(outputs[t.output].shape[1:]) for t in self.model.taps}
        return [replace(t, shape=shapes[t.name]) for t in self.model.taps]

    def _probe_item(self, listing: Listing):
        for index in range(len(listing)):
            try:
                return self.pre.prepare(self.source.read(index))
            except (BadItem, OSError):
                continue
        raise UserInputError(f"{self.source.path}: no item could be preprocessed")

    def _run_batches(self, batches, listing: Listing, writer, bar):
        cfg = self.cfg
        expected = expected_shapes(writer.fingerprint)
        sink = _WriterThread(writer)
        n_computed = n_bad = 0
        with ThreadPoolExecutor(
            cfg.workers, thread_name_prefix="embedkit-prep", initializer=_yield_to_inference
        ) as pool:
            pending: deque = deque()
            todo = iter(batches)
            try:
                for _ in range(cfg.workers + 2):  # prefetch window
                    _submit(pool, pending, todo, self.work.prepare)
                if pending:
                    _ = self.runner  # load the session while the first batches decode
                while pending:
                    b, future = pending.popleft()
                    good, bad, feed = future.result()
                    _submit(pool, pending, todo, self.work.prepare)
                    self._reject(bad, listing, writer)
                    n_bad += len(bad)
                    if feed is not None:
                        features = self.work.infer(feed, expected, len(good))
                        good, features, nonfinite = self.work.screen(good, features)
                        self._reject(nonfinite, listing, writer)  # never journaled
                        n_bad += len(nonfinite)
                    if good:
                        sink.put(b, [listing.ids[i] for i in good], good, listing, features)
                        n_computed += len(good)
                    bar.update(len(good) + len(bad), work=self.work.plan.work(b))
            except BaseException:
                for _, future in pending:
                    future.cancel()
                sink.close(reraise=False)
                raise
            sink.close()
        return n_computed, n_bad

    def _reject(self, bad: list[tuple[int, str]], listing: Listing, writer) -> None:
        """Stop at the first bad item, or record each one with ``--skip-bad``."""
        for index, reason in bad:
            if not self.cfg.skip_bad:
                raise self.work.bad_item_error(index, reason)
            writer.record_bad(listing.ids[index], listing.digests[index], reason)


def _yield_to_inference() -> None:
    """Lower this preprocessing thread's priority below the ONNX Runtime threads' (Linux).

    ORT runs one intra-op thread per core, and each parallel operator waits for its slowest
    thread: a decoding thread that preempts one of them stalls all. Ten steps nicer, it
    decodes in the gaps between operators and while the session waits for the next batch
    (benchmarks/RESULTS.md, "Images").
    """
    if sys.platform == "linux":  # elsewhere the call would renice the whole process
        tid = threading.get_native_id()
        try:
            os.setpriority(
                os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + PREP_NICE)
            )
        except OSError:  # a sandbox may forbid it; decoding then simply competes
            pass


def _submit(pool, pending: deque, todo, fn) -> None:
    nxt = next(todo, None)
    if nxt is not None:
        b, rows = nxt
        pending.append((b, pool.submit(fn, rows)))


def _check_source_shape(model: ModelSpec, pre, source: Source) -> None:
    """Fail before any work when an array source cannot fit the model's input."""
    if not isinstance(source, ArraySource):
        return
    shape, dtype = source.item_shape, source.array.dtype
    if isinstance(pre.spec, ImageSpec):
        if dtype != np.uint8 or not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            raise UserInputError(
                f"{source.path}: image arrays must be uint8 (N, H, W) or (N, H, W, 3), got "
                f"{dtype} {(len(source.array), *shape)}; pass images or use an array model"
            )
        return
    check_item_shape(model, pre.spec.input, shape, str(source.path))


class _WriterThread:
    """Journal batches in a background thread; errors resurface in the caller."""

    def __init__(self, writer):
        self.writer = writer
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="embedkit-writer", daemon=True)
        self.thread.start()

    def put(self, b: int, ids, rows, listing: Listing, features) -> None:
        if self.error is not None:
            raise self.error
        labels = [listing.labels[i] for i in rows]
        splits = [listing.splits[i] for i in rows]
        digests = [listing.digests[i] for i in rows]
        self.queue.put((b, ids, digests, labels, splits, features))

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
