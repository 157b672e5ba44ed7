"""The engine interface: how the planned batches of one extraction are run, by ``local``
(``local.py``, one session in this process) or ``ray`` (``ray_engine.py``, an actor pool).
Each picks the form of the store's journal; the commit is the same, so both give
bit-identical stores (``pipeline.py`` runs the steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from embedkit.extract.config import ExtractConfig
from embedkit.extract.sources import Listing
from embedkit.extract.worker import BatchWorker
from embedkit.progress import Progress
from embedkit.store import StoreWriter
from embedkit.store.txn.journal import Journal


@dataclass(frozen=True)
class Job:
    """One extraction, listed and planned: what ``extract`` hands its engine."""

    cfg: ExtractConfig  # as the engine's configure() returned it
    work: BatchWorker  # reads, preprocesses and runs batches; its plan is set
    listing: Listing  # the source's items (ids, digests, labels, splits), tagged
    writer: StoreWriter  # holds the store's lock; extract opens the engine's journal
    todo: np.ndarray  # positions into ``listing`` of the items to compute, in source order

    @property
    def batch_positions(self) -> list[np.ndarray]:
        """Per batch of the plan, its items' positions into ``todo``."""
        return self.work.plan.positions(self.todo)


@dataclass(frozen=True)
class Outcome:
    """What an engine's run did, for the summary."""

    n_computed: int  # items run through the model and journaled
    n_bad: int  # items recorded as bad (--skip-bad)
    provider: str | None  # the execution provider that computed them; None: none ran


class Engine(Protocol):
    """How the batches of one extraction run; ``extract`` calls these in this order."""

    def configure(self, cfg: ExtractConfig) -> ExtractConfig:
        """Fill the engine's defaults; refuse what it cannot run, before the store is touched."""

    def start(self, work: BatchWorker) -> None:
        """A session will be needed: start loading it now, or leave it to the workers."""

    def journal(self, job: Job) -> Journal:
        """The store journal this engine writes (``embedkit.store.txn.journal``)."""

    def run(self, job: Job, batches: list[tuple[int, np.ndarray]], bar: Progress) -> Outcome:
        """Compute ``batches`` (batch number, source positions) into the journal."""
