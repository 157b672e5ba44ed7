"""The Ray engine: the same batches as a local run, computed by an actor pool on a cluster.

    embedkit extract lite0.onnx images/ --out feats.h5 --engine ray              # local Ray
    embedkit extract lite0.onnx images/ --out feats.h5 --engine ray --address auto

Each planned batch is one row of a Ray Dataset, a few per block (:func:`batches_per_task`);
a fixed pool of :class:`ShardActor` (one ONNX Runtime session each) journals each batch as
its own shard (:class:`~embedkit.store.BatchShards`), or sends its bytes to the driver
when its node cannot see the journal. The driver commits through the one commit path, so
the store is bit-identical to a local ``extract`` (docs/scale-out.md, "How it works").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from embedkit.errors import EmbedkitError, StoreError, UserInputError, require
from embedkit.extract.config import ExtractConfig
from embedkit.extract.engine import Job, Outcome
from embedkit.extract.worker import BatchWorker, expected_shapes
from embedkit.progress import Progress
from embedkit.store import BatchShards, write_shard
from embedkit.store.files.shards import write_atomic
from embedkit.store.txn.writer import journal_bad

_NO_FILES = {"shard": "", "shard_bytes": b"", "bad": "", "bad_bytes": b""}  # none sent back


class RayEngine:
    """Batches run by an actor pool on a Ray cluster, each journaled as its own shard."""

    def configure(self, cfg: ExtractConfig) -> ExtractConfig:
        for module in ("ray", "ray.data"):  # before the store is touched
            require(module, "ray", "--engine ray")
        return cfg  # the device and the pool are checked against the cluster in run()

    def start(self, work: BatchWorker) -> None:
        """Nothing: each actor loads its own session."""

    def journal(self, job: Job) -> BatchShards:
        """One shard per batch, each written by the actor that computed it."""
        return BatchShards(job.listing.rows(job.todo.tolist())["ids"], job.batch_positions)

    def run(self, job: Job, batches: list[tuple[int, np.ndarray]], bar: Progress) -> Outcome:
        """Run ``batches`` on Ray into the writer's journal, ready for ``writer.commit()``."""
        import ray
        import ray.data  # noqa: F401  configures its loggers on import: before ours

        if not batches:
            return Outcome(0, 0, None)
        started = _connect(ray, job.cfg.address)
        quiet = logging.getLogger("ray.data")  # a line per dataset step; errors are raised
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            return _run(ray, job, batches, bar)
        finally:
            quiet.setLevel(level)
            if started:
                ray.shutdown()


def _connect(ray, address: str | None) -> bool:
    """Join the running Ray session or cluster, or start a local one; True if started."""
    if ray.is_initialized():
        return False
    try:
        with _stderr_kept_back():  # Ray's C++ core logs to fd 2 while it retries
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    except ConnectionError as exc:
        raise UserInputError(
            f"--address {address}: no Ray cluster found ({exc}); start one with "
            "`ray start --head`, or leave out --address to start Ray on this machine"
        ) from None
    return True


@contextlib.contextmanager
def _stderr_kept_back():
    """Hold what is written to file descriptor 2 (C-level too) and show it only when the
    block succeeds: on an error the user sees one line, not Ray's connection retries."""
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                os.write(2, held.read())


def _pool(ray, cfg: ExtractConfig, n_batches: int) -> tuple[int, dict, str, int | None]:
    """Actor count, resources per actor, ORT device and intra-op threads."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if cfg.device == "cuda" and gpus == 0:
        raise UserInputError("--device cuda: the Ray cluster has no GPUs; pass --device cpu")
    if cfg.device != "cpu" and gpus > 0:  # one actor per GPU, CUDA or fail
        slots, per_actor, device, threads = gpus, {"num_gpus": 1, "num_cpus": 1}, "cuda", None
    else:  # many single-threaded sessions scale better than one with many threads
        slots, per_actor, device, threads = cpus, {"num_cpus": 1}, "cpu", 1
    kind = "GPU" if "num_gpus" in per_actor else "CPU"
    if slots < 1:
        raise UserInputError(f"the Ray cluster has no {kind}s for extraction actors")
    if cfg.workers is not None and cfg.workers > slots:
        raise UserInputError(
            f"--workers {cfg.workers}: the Ray cluster has {slots} {kind}s (one actor each); "
            f"pass --workers {slots} or fewer, or add nodes"
        )
    return min(cfg.workers or slots, n_batches), per_actor, device, threads


def _run(ray, job: Job, batches, bar) -> Outcome:
    work, listing, writer, cfg = job.work, job.listing, job.writer, job.cfg
    n_actors, per_actor, device, threads = _pool(ray, cfg, len(batches))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is embedkit.progress
    context.print_on_execution_start = False
    rows = [
        {"batch": b, "rows": positions.tolist(), **listing.rows(positions.tolist())}
        for b, positions in batches
    ]
    per_task = batches_per_task(len(rows), n_actors)
    blocks = -(-len(rows) // per_task)
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    actor = BatchWorker(work.model, work.source, device=device, dtype=work.dtype, threads=threads)
    actor.plan = work.plan  # text: the tokens of the to-do items, tokenised once
    results = dataset.map_batches(
        ShardActor,
        batch_size=per_task,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        fn_constructor_kwargs={
            "work": actor,
            "journal": str(writer.journal),
            "fingerprint": writer.fingerprint,
            "skip_bad": cfg.skip_bad,
            "via_driver": cfg.ray_shards == "driver",
        },
        **per_actor,
    )
    n_computed = n_bad = 0
    provider, with_shard = None, set()  # the batches that made a shard
    for out in results.iter_rows():
        if out["error"]:  # stops the dataset: the iterator is dropped
            raise _ERRORS.get(out["error"], StoreError)(out["message"])
        for name, data in ((out["shard"], out["shard_bytes"]), (out["bad"], out["bad_bytes"])):
            if name:  # sent by an actor that cannot see the store's folder
                write_atomic(Path(writer.journal) / name, data)
        n_computed += out["computed"]
        n_bad += out["n_bad"]
        if out["computed"]:
            with_shard.add(out["batch"])
            provider = out["provider"]
        bar.update(out["computed"] + out["n_bad"], work=work.plan.work(int(out["batch"])))
    journaled = writer.begin(RayEngine().journal(job))  # finds every shard the actors wrote
    missing = sorted(with_shard - journaled)
    if missing:
        raise StoreError(
            f"{writer.journal}: the shards of {len(missing)} batches (first: {missing[0]}) "
            "are not there; put the store on a filesystem every Ray node mounts at the "
            "same path, or pass --ray-shards driver, and re-run"
        )
    return Outcome(n_computed, n_bad, provider)


def batches_per_task(n_batches: int, n_actors: int) -> int:
    """Batches one Ray task carries: up to 8, keeping at least 4 tasks per actor.

    Ray Data's per-task cost is paid by the driver (about 30 ms per block on one core),
    so a task of one 32-item batch spends a core-second every 30 batches on scheduling;
    several batches per task divide it, while 4 tasks per actor keep the pool balanced.
    Each batch still becomes its own shard, so the store does not depend on this.

    >>> batches_per_task(313, 2), batches_per_task(40, 2), batches_per_task(3, 4)
    (8, 5, 1)
    """
    return max(1, min(8, n_batches // (4 * n_actors)))


class ShardActor:
    """One actor of the pool: a BatchWorker with its session; one batch in, one shard out,
    written into the journal, or (``via_driver``, or a node that cannot see the store's
    folder) sent back as the file's bytes for the driver to write: the same files either way.
    """

    def __init__(self, work: BatchWorker, journal: str, fingerprint, skip_bad: bool,
                 via_driver: bool = False):  # fmt: skip
        self.work, self.journal = work, Path(journal)
        self.fingerprint, self.skip_bad = fingerprint, skip_bad
        self.expected = expected_shapes(fingerprint)
        self.error: EmbedkitError | None = None  # reported with every batch: see __call__
        self.via_driver = via_driver or not (self.journal / "manifest.json").is_file()
        try:
            _ = self.work.runner  # load the session before the first batch
        except EmbedkitError as exc:
            self.error = exc

    def __call__(self, table) -> dict[str, np.ndarray]:
        outs = []
        for row in table.to_pylist():  # one row per batch of the plan
            try:
                if self.error is not None:
                    raise self.error
                outs.append({**self._one(row), "error": "", "message": ""})
            except EmbedkitError as exc:  # Ray Data would wrap it and drop the type and text
                out = {"batch": row["batch"], "computed": 0, "n_bad": 0, "provider": ""}
                outs.append({**out, **_NO_FILES, "error": type(exc).__name__, "message": str(exc)})
        # object arrays: numpy's fixed-width bytes would drop a file's trailing NUL bytes
        return {key: np.asarray([o[key] for o in outs], dtype=object if key.endswith("_bytes")
                                else None) for key in outs[0]}  # fmt: skip

    def _one(self, row: dict) -> dict:
        b = row["batch"]
        prepared = self.work.prepare(np.asarray(row["rows"], dtype=np.int64))
        good, bad, features = self.work.compute(prepared, self.expected, skip_bad=self.skip_bad)
        provider = self.work.provider or ""
        out = {"batch": b, "computed": len(good), "n_bad": len(bad), "provider": provider}
        if not self.via_driver:
            self._write(self.journal, row, good, bad, features)
            return out | _NO_FILES
        with tempfile.TemporaryDirectory(prefix="embedkit-shard-") as folder:
            written = self._write(Path(folder), row, good, bad, features)
            for key, path in written.items():  # the file's name and bytes, or empty
                out[key] = path.name if path else ""
                out[f"{key}_bytes"] = path.read_bytes() if path else b""
        return out

    def _write(self, folder: Path, row: dict, good, bad, features) -> dict[str, Path | None]:
        """Journal the batch's bad items, then its shard, into ``folder``; their paths."""
        b, at = row["batch"], {index: k for k, index in enumerate(row["rows"])}
        written: dict[str, Path | None] = {"bad": None, "shard": None}
        if bad:  # journaled before the shard: a journaled shard has its bad items beside it
            records = [(row["ids"][at[i]], row["digests"][at[i]], why) for i, why in bad]
            written["bad"] = journal_bad(folder, b, records)
        if good:
            ids, digests, labels, splits = (
                [row[key][at[i]] for i in good] for key in ("ids", "digests", "labels", "splits")
            )
            written["shard"] = write_shard(
                folder, self.fingerprint, ids, digests, features, labels=labels, splits=splits
            )
        return written


_ERRORS = {cls.__name__: cls for cls in (UserInputError, StoreError, EmbedkitError)}
