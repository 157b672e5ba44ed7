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
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.contract import BACKBONE, ImageSpec
from embedkit.errors import UserInputError, require
from embedkit.extract.batching import Plan, plan_batches
from embedkit.extract.model import ModelSpec, load_model
from embedkit.extract.preprocess import (
    BadItem,
    TextPreprocessor,
    check_item_shape,
)
from embedkit.extract.providers import Runner, select_providers
from embedkit.extract.sources import ArraySource, Listing, Source, id_from_name, open_source
from embedkit.extract.worker import BatchWorker, expected_shapes
from embedkit.progress import Progress

ENGINES = ("local", "ray")
RAY_SHARDS = ("auto", "driver")
PREP_NICE = 10  # preprocessing threads run this much nicer on Linux (see _yield_to_inference)


@dataclass(frozen=True)
class ExtractConfig:
    """How to run an extraction; every field is also an ``embedkit extract`` option."""

    batch_size: int = 32  # items per session.run (text: x mean tokens, padded)
    device: str = "auto"  # auto (CUDA when available), cpu or cuda
    workers: int | None = None  # local: preprocessing threads (None: half the cores, 1 to 8);
    # ray: actors, each one ONNX Runtime session (None: one per GPU, else one per CPU)
    dtype: str = "float32"  # storage dtype: float32 or float16
    taps: tuple[str, ...] | None = None  # tap names to store (default: all)
    preprocess: str | Path | dict | None = None  # overrides the model's preprocessing spec
    labels: str | Path | None = None  # labels.npy for a .npy source
    split: str | None = None  # tag every item with train, val or test
    id_prefix: str | None = None  # prepended to ids (default "<split>/" with split)
    text_column: str | None = None  # CSV/JSONL text column (default "text")
    label_column: str | None = None  # table label column (default "label" if present)
    column: str | None = None  # data column of a table: text, image bytes or image paths
    # (default: the first of text, image, path; CSV/JSONL: as text_column)
    id_column: str | None = None  # table id column (default "id" if present; else row ids)
    skip_bad: bool = False  # record bad items in the store and go on, instead of stopping
    limit: int | None = None  # use only the first N items of the source
    progress: bool = True  # stderr: tqdm bar on a terminal, else a log line every 5 s
    engine: str = "local"  # local (this process) or ray (actors on a Ray cluster)
    address: str | None = None  # ray: "auto" or HOST:PORT of a cluster; None starts a local one
    ray_shards: str = "auto"  # ray: how shards reach the store: auto (written in place when
    # the actor's node sees the store's folder, else sent to the driver) or driver (always sent)


@dataclass(frozen=True)
class ExtractSummary:
    """What one extraction did."""

    path: str  # the store
    n_items: int  # items in the source (after --limit)
    n_computed: int  # items run through the model by this run
    n_cached: int  # items already in the store with the same content (skipped)
    n_resumed: int  # items an interrupted run had journaled (not recomputed)
    n_bad: int  # items skipped as bad (--skip-bad)
    seconds: float  # wall time of the whole call
    n_total: int  # rows in the store afterwards
    nbytes: int  # store file size afterwards
    provider: str  # the execution provider used ("none" when nothing was computed)
    n_relabelled: int = 0  # cached rows whose label changed to follow the source

    @property
    def items_per_s(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.path}: computed {self.n_computed} items, {self.n_cached} cached, "
            f"{self.n_resumed} resumed, {self.n_bad} bad"
            f"{f', {self.n_relabelled} relabelled' if self.n_relabelled else ''} "
            f"in {self.seconds:.1f} s ({self.items_per_s:.1f} items/s, {self.provider}); "
            f"store holds {self.n_total} items, {self.nbytes / 1e6:.1f} MB"
        )


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
    valid = {f.name for f in fields(ExtractConfig)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"unknown extract option {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
    cfg = replace(config or ExtractConfig(), **options)
    if cfg.engine not in ENGINES:
        raise UserInputError(f"--engine {cfg.engine!r} is not one of: {', '.join(ENGINES)}")
    if cfg.ray_shards not in RAY_SHARDS:
        raise UserInputError(
            f"--ray-shards {cfg.ray_shards!r} is not one of: {', '.join(RAY_SHARDS)}"
        )
    if cfg.address is not None and cfg.engine != "ray":
        raise UserInputError(f"--address {cfg.address} applies to --engine ray only; add it")
    if cfg.ray_shards != "auto" and cfg.engine != "ray":
        raise UserInputError(f"--ray-shards {cfg.ray_shards} applies to --engine ray only; add it")
    if cfg.workers is None and cfg.engine == "local":
        # ORT takes every core for the model; decoding needs far fewer
        from joblib import cpu_count  # the cores this process may use (cgroups, affinity)

        cfg = replace(cfg, workers=max(1, min(8, cpu_count() // 2)))
    if cfg.taps is not None:
        cfg = replace(cfg, taps=tuple(cfg.taps))
    return _Extraction(model, source, out, cfg).run()


class _Extraction:
    def __init__(self, model, source, out, cfg: ExtractConfig):
        self.start = time.perf_counter()
        self.cfg = cfg
        if cfg.batch_size < 1 or (cfg.workers is not None and cfg.workers < 1):
            raise UserInputError("--batch-size and --workers must be at least 1")
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
        todo = writer.plan(listing.ids, listing.digests)
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
    (benchmarks/results/speed.md, "Images").
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
