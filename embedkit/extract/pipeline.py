"""Run an ONNX graph over a source into the feature store, resumably: the orchestration.

``extract`` opens the model and the source, lists the items, takes the store's writer
lock, plans what to compute and cuts it into batches; the engine that ``--engine`` names
(``engine.py``: ``local.py`` in this process, ``ray_engine.py`` on a Ray cluster) opens
the journal and runs the batches; then the store commits. Batch ``b`` always holds the
same items, so a run killed at any point and started again gives a bit-identical store.

    embedkit extract lite0.onnx images/ --out feats.h5 --batch-size 64
    embedkit extract lite0.onnx images/ --out feats.h5 --engine ray --address auto
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.contract import BACKBONE, ImageSpec
from embedkit.errors import UserInputError
from embedkit.extract.batching import plan_batches
from embedkit.extract.config import ExtractConfig, ExtractSummary
from embedkit.extract.engine import Engine, Job
from embedkit.extract.local import LocalEngine
from embedkit.extract.model import ModelSpec, load_model
from embedkit.extract.opening import open_source
from embedkit.extract.preprocess import BadItem, TextPreprocessor, check_item_shape
from embedkit.extract.ray_engine import RayEngine
from embedkit.extract.sources import ArraySource, Listing, Source, id_from_name
from embedkit.extract.worker import BatchWorker
from embedkit.progress import Progress
from embedkit.store import Fingerprint, StoreWriter

ENGINES: dict[str, type[Engine]] = {"local": LocalEngine, "ray": RayEngine}  # --engine
_COLUMN_OPTIONS = ("text_column", "label_column", "column", "id_column")  # open_source's


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
    cfg = replace(config or ExtractConfig(), **options)  # a wrong name or value: one line
    engine = ENGINES[cfg.engine]()
    return _Extraction(model, source, out, engine.configure(cfg), engine).run()


class _Extraction:
    def __init__(self, model, source, out, cfg: ExtractConfig, engine: Engine):
        self.start = time.perf_counter()
        self.cfg, self.engine = cfg, engine
        self.model: ModelSpec = load_model(model, preprocess=cfg.preprocess, taps=cfg.taps)
        if not isinstance(source, Source):
            media = "image" if isinstance(self.model.preprocess, ImageSpec) else "text"
            columns = {name: getattr(cfg, name) for name in _COLUMN_OPTIONS}
            source = open_source(source, labels=cfg.labels, limit=cfg.limit, media=media, **columns)
        self.source = source
        self.out = Path(out)
        self.work = BatchWorker(self.model, self.source, device=cfg.device, dtype=cfg.dtype)
        self.pre = self.work.pre
        _check_source_shape(self.model, self.pre, self.source)

    def run(self) -> ExtractSummary:
        try:
            return self._run()
        finally:
            self.work.settle()  # a session start_session began: never left loading

    def _run(self) -> ExtractSummary:
        if not self.out.exists():  # a new store: the session loads while we scan
            self.engine.start(self.work)
        listing = self.source.scan().tagged(self.cfg.split, self.cfg.id_prefix)
        taps = self._tap_infos(listing)
        fingerprint = Fingerprint.create(
            self.model.sha256, taps, self.pre.spec.to_dict(), self.cfg.dtype
        )
        backbone = str(self.model.metadata.get(BACKBONE, self.model.path.stem))
        source = str(self.source.path)
        # the model's absolute path: train and predict may run in another folder
        names = {"model": os.path.abspath(self.model.path), "backbone": backbone, "source": source}
        provenance = {key: id_from_name(name) for key, name in names.items()}  # maybe not UTF-8
        labels = listing.label_names
        writer = StoreWriter(self.out, fingerprint, provenance=provenance, label_names=labels)
        todo = writer.plan(listing.ids, listing.digests, where=source)
        if len(todo):  # loads while we tokenise and plan
            self.engine.start(self.work)
        if any(label is not None for label in listing.labels):  # cached rows follow the source
            cached = np.setdiff1d(np.arange(len(listing)), todo).tolist()
            writer.relabel([listing.ids[i] for i in cached], [listing.labels[i] for i in cached])
        texts = pre = None  # text: tokenised once and bucketed by length; else fixed-size batches
        if isinstance(self.pre, TextPreprocessor):
            texts, pre = [self.source.read(i) for i in todo.tolist()], self.pre
        self.work.plan = plan = plan_batches(todo, self.cfg.batch_size, texts=texts, pre=pre)
        job = Job(self.cfg, self.work, listing, writer, todo)
        done = writer.begin(self.engine.journal(job))
        batches = [(b, rows) for b, rows in enumerate(plan.batches) if b not in done]
        n_resumed = len(todo) - sum(len(rows) for _, rows in batches)
        bar = Progress("extract", len(todo), initial=n_resumed, enabled=self.cfg.progress,
                       work_total=sum(plan.work(b) for b, _ in batches))  # fmt: skip
        try:
            with bar:
                outcome = self.engine.run(job, batches, bar)
        except BaseException:
            writer.close()  # keep the journal: the next run resumes from it
            raise
        provider = outcome.provider or self.work.provider  # or the session that probed shapes
        if provider is not None:  # recorded in the store's attributes and run log
            writer.provenance["provider"] = provider
        commit = writer.commit()
        return ExtractSummary(
            path=str(self.out),
            n_items=len(listing),
            n_computed=outcome.n_computed,
            n_cached=len(listing) - len(todo),
            n_resumed=n_resumed,
            n_bad=outcome.n_bad,
            seconds=time.perf_counter() - self.start,
            n_total=commit.n_total,
            nbytes=commit.nbytes,
            provider=provider or "none",
            n_relabelled=commit.n_relabelled,
        )

    def _tap_infos(self, listing: Listing):
        """The taps with their shapes; a shape the graph leaves dynamic is probed on one item."""
        shapes = {t.name: t.shape for t in self.model.taps}
        if any(s is None for s in shapes.values()):
            outputs = self.work.runner.run(self.pre.collate([self._probe_item(listing)]))
            shapes = {t.name: tuple(outputs[t.output].shape[1:]) for t in self.model.taps}
        return [replace(t, shape=shapes[t.name]) for t in self.model.taps]

    def _probe_item(self, listing: Listing):
        for index in range(len(listing)):
            try:
                return self.pre.prepare(self.source.read(index))
            except (BadItem, OSError):
                continue
        raise UserInputError(f"{self.source.path}: no item could be preprocessed")


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
