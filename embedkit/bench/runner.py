"""Run the bench: plan the runs, skip the done ones, fit every head, write records.

    embedkit bench stores/fmnist-lite0.h5 --heads sgd,logreg,linear,mlp,knn,centroid \\
        --shots 1,2,4,8,16,all --seeds 5 --out bench/
    embedkit bench stores/fmnist-lite0.h5 --taps all --out bench-taps/

The features of every tap set are read once into memory. Runs go to worker processes
(joblib/loky); each tap set's matrix is written once to a temporary ``.npy`` and
memory-mapped by the workers, and each worker limits BLAS and torch to ``cores // jobs``
threads so that workers do not oversubscribe the cores. Every tap set sees the same
k-shot rows, validation rows and test rows (paired comparisons); at the largest shot
level each run also scores its fold of the cross-validation that picks the recommended
pair (:func:`~embedkit.bench.data.cv_holdout`, :mod:`embedkit.bench.choose`). Records are
written by the parent as runs finish, so an interrupted bench resumes where it stopped.
What a worker does with a run (and how the seeds of a deterministic head share one fit
on all rows) is in :mod:`embedkit.bench.tasks`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
from joblib import Parallel, cpu_count, delayed

from embedkit.bench.data import (
    ALL,
    BenchData,
    check_shots,
    cv_folds,
    cv_holdout,
    kshot_indices,
    load_bench_sets,
    parse_shots,
    shot_rank,
)
from embedkit.bench.records import done_runs, run_id, write_record
from embedkit.bench.report import build_report
from embedkit.bench.tasks import Task, build_head, run_task, share_fits
from embedkit.errors import UserInputError, check_known
from embedkit.heads.registry import BENCH_DEFAULT_HEADS, head_class, head_record
from embedkit.progress import Progress

DEFAULT_SHOTS = (1, 2, 4, 8, 16, ALL)
PROTOCOLS = ("kshot", "cv")


@dataclass(frozen=True)
class BenchSpec:
    """What to compare, and how.

    Examples
    --------
    >>> BenchSpec(heads=("logreg", "knn"), shots=(1, 4, "all"), seeds=3).n_runs  # per tap set
    18
    """

    heads: tuple[str, ...] = BENCH_DEFAULT_HEADS  # names from embedkit.heads.HEADS
    shots: tuple[int | str, ...] = DEFAULT_SHOTS  # rows per class; "all" = the whole pool
    seeds: int = 5  # seeds 0 .. seeds-1: each draws its own k-shot rows and head init
    protocol: str = "kshot"  # "kshot": score on the fixed test split; "cv": on held-out folds
    folds: int = 5  # cv only: stratified folds of the training pool
    sweep: bool = False  # tune each head on a validation part of its own training rows
    allow_fewer: bool = False  # a class with fewer rows than shots gives all it has
    jobs: int | None = None  # worker processes; None = all cores, 1 = in this process
    head_params: dict | None = None  # {"knn": {"n_neighbors": 3}}: fixed head parameters
    taps: str | tuple | None = None  # tap sets: None = the store's default; "all", "a,b", "a+b"
    val: float = 0.2  # largest shot level: 1/folds of the repeated cross-validation (0: none)

    def __post_init__(self):
        heads = self.heads.split(",") if isinstance(self.heads, str) else self.heads
        object.__setattr__(self, "heads", tuple(h.strip() for h in heads))
        object.__setattr__(self, "shots", parse_shots(self.shots))
        if self.protocol not in PROTOCOLS:
            raise UserInputError(
                f"--protocol {self.protocol!r} is not valid; use one of: kshot, cv"
            )
        if int(self.seeds) < 1:
            raise UserInputError(f"--seeds {self.seeds} is not valid; give 1 or more")
        if not self.heads or "" in self.heads:
            raise UserInputError("--heads is empty; give e.g. sgd,logreg,knn")
        if not 0 <= float(self.val) < 1:
            raise UserInputError(
                f"--val {self.val} is not valid; give a fraction of the training rows in [0, 1)"
            )

    @property
    def n_runs(self) -> int:
        """Runs per tap set."""
        per = self.folds if self.protocol == "cv" else 1
        return len(self.heads) * len(self.shots) * int(self.seeds) * per


def _check_joined(taps, heads) -> None:
    """Refuse joined tap sets for heads that read one tap's feature maps (as train does)."""
    sets = [t.strip() for text in (taps or ()) for t in str(text).split(",")]
    joined = next((t for t in sets if "+" in t or t == "joined"), None)
    if joined is None:
        return
    for name in heads:
        if head_record(name).torch and getattr(head_class(name), "spatial_input", False):
            raise UserInputError(
                f"--heads {name}: {head_class(name).__name__} reads one tap's feature maps; "
                f"--taps {joined!r} joins taps; bench it on single taps (e.g. --taps a,b)"
            )


def run_bench(store, *, out: str | Path, spec: BenchSpec | None = None, tap=None,
              exclude=None, make_test_split: float | None = None, progress: bool = False,
              plots: bool = True, **spec_fields):  # fmt: skip
    """Compare heads on one store; write one record per run and the report; return the table.

    Parameters
    ----------
    store : str, Path, FeatureStore or BenchData
        The labelled feature store (or data already in memory).
    out : str or Path
        The results directory: ``runs/*.json``, ``results.csv``, ``results.md`` and plots.
    spec : BenchSpec, optional
        The bench; keyword fields (``heads=``, ``shots=``, ``taps=``, ...) replace its own.
    tap, exclude, make_test_split
        Passed to :func:`~embedkit.bench.data.load_bench_sets`; ``tap`` is one tap set, an
        alternative to ``taps=``.
    progress : bool
        Show n of N runs with an ETA on stderr (:class:`~embedkit.progress.Progress`),
        and a line per failed run.
    plots : bool
        Write the PNG plots (the CSV and Markdown are always written).

    Returns
    -------
    BenchTable
        Mean and 95% t-interval per (tap set, head, shots) over seeds, the baselines and
        the recommended pair; see :func:`build_report`.

    Examples
    --------
    >>> table = run_bench("stores/fmnist-lite0.h5", heads="logreg,knn", taps="all",
    ...                   shots="1,16,all", seeds=3, out="bench/")  # doctest: +SKIP
    >>> table.recommended["tap"], table.recommended["head"]  # doctest: +SKIP
    ('blocks.15', 'logreg')
    """
    check_known(spec_fields, [f.name for f in fields(BenchSpec)], "bench option")
    spec = replace(spec or BenchSpec(), **spec_fields)
    for name in spec.heads:
        head_record(name, " in --heads")  # raises for a name the registry does not know
    if tap is not None and spec.taps is not None:
        raise UserInputError("give --tap or --taps, not both")
    _check_joined(spec.taps if tap is None else (tap,), spec.heads)
    if isinstance(store, BenchData):
        datas = [store]
    else:
        datas = load_bench_sets(
            store, taps=spec.taps if tap is None else [tap], exclude=exclude,
            make_test_split=make_test_split, require_test=spec.protocol == "kshot",
        )  # fmt: skip
    check_shots(datas[0], spec.shots, allow_fewer=spec.allow_fewer)  # same labels for all
    out = Path(out)
    config = bench_config(datas, spec)
    done = done_runs(out / "runs", config)
    todo = [t for t in plan(datas, spec) if t.run_id not in done]
    tasks = share_fits(todo, sweep=spec.sweep)  # deterministic heads: one fit per group
    started, failed = time.perf_counter(), []
    cost = {t.run_id: head_record(t.head).cost * max(1, len(t.train)) for t in todo}
    with Progress("bench", len(todo), unit="runs", enabled=progress,
                  work_total=sum(cost.values())) as bar:  # fmt: skip
        for record in _execute(tasks, datas, spec, config):
            write_record(out / "runs", record)
            bar.update(1, work=cost.get(record["run_id"], 1))
            if record["status"] != "ok":
                failed.append(record)
                if progress:
                    error = " ".join(str(record["error"]).split())
                    print(f"[bench] {record['run_id']} FAILED: {error}", file=sys.stderr)
    if todo and len(failed) == len(todo) and not done:
        first = min(failed, key=lambda r: r["run_id"])
        raise UserInputError(
            f"all {len(todo)} bench runs failed; the first, {first['run_id']}: "
            f"{' '.join(str(first['error']).split())} (records in {out / 'runs'})"
        )
    table = build_report(out, plots=plots)
    table.info.update(
        runs_planned=spec.n_runs * len(datas), runs_skipped=len(done), runs_run=len(todo),
        wall_s=time.perf_counter() - started,
    )  # fmt: skip
    return table


def bench_config(datas: list[BenchData], spec: BenchSpec) -> dict:
    """What makes two benches' runs comparable: the data, the protocol and head params."""
    first = datas[0]
    return {
        "source": {k: v for k, v in first.source.items() if k not in ("tap", "shape", "digest")},
        "taps": {
            d.tap: {"shape": d.source.get("shape"), "digest": d.source.get("digest")} for d in datas
        },
        "tap_order": [d.tap for d in datas],  # as given: shallow to deep for "all"
        "protocol": spec.protocol,
        "folds": spec.folds if spec.protocol == "cv" else None,
        "sweep": spec.sweep,
        "val": float(spec.val),
        "head_params": spec.head_params or {},
        "heads": {name: _head_signature(name, spec) for name in spec.heads},
        "n_train_pool": len(first.train),
        "n_test": len(first.test),
    }


def _head_signature(name: str, spec: BenchSpec) -> dict:
    """The head's class and parameters as built (defaults included), minus the seed.

    A change of a head's defaults then refuses to mix old records with new ones. A code
    change that keeps the defaults is not seen: delete runs/ after upgrading the heads.
    """
    head = build_head(name, 0, (spec.head_params or {}).get(name))
    params = {k: repr(v) for k, v in head.get_params(deep=False).items() if k != "random_state"}
    return {"class": type(head).__name__, "params": params}


def plan(datas: list[BenchData], spec: BenchSpec) -> list[Task]:
    """Every run of the bench, most expensive first (for load balance over workers)."""
    data, tasks = datas[0], []
    top_shots = max(spec.shots, key=shot_rank)  # where validation picks the recommended pair
    for seed in range(int(spec.seeds)):
        splits = [(None, data.train, data.test)]  # (fold, training pool, evaluated rows)
        if spec.protocol == "cv":
            splits = [(f, *p) for f, p in enumerate(cv_folds(data.y, data.train, spec.folds, seed))]
        for fold, pool, evaluate in splits:
            base = baselines(data.y, pool, evaluate)
            for shots in spec.shots:
                rows = kshot_indices(data.y, pool, shots, seed)
                top = shots == top_shots and spec.val
                val = cv_holdout(data.y, rows, seed, fraction=float(spec.val)) if top else None
                for tap in (d.tap for d in datas):
                    for head in spec.heads:
                        rid = run_id(tap, head, shots, seed, fold)
                        tasks.append(
                            Task(rid, tap, head, shots, seed, fold, rows, evaluate, val, base)
                        )
    tasks.sort(key=lambda t: (-len(t.train), -head_record(t.head).cost))
    return tasks


def baselines(y: np.ndarray, pool: np.ndarray, evaluate: np.ndarray) -> dict:
    """Accuracy on ``evaluate`` of two predictors that ignore the features.

    ``majority``: always the most frequent class of the training pool. ``stratified``:
    a class drawn at random with the pool's class frequencies, in expectation
    (the sum over classes of pool frequency x evaluation frequency).

    Examples
    --------
    >>> y = np.array([0, 0, 0, 1, 0, 1])
    >>> baselines(y, np.arange(4), np.arange(4, 6))
    {'majority': 0.5, 'stratified': 0.5}
    """
    k = int(y.max()) + 1 if len(y) else 1
    prior = np.bincount(y[pool], minlength=k) / max(1, len(pool))
    share = np.bincount(y[evaluate], minlength=k) / max(1, len(evaluate))
    return {"majority": float(share[int(prior.argmax())]), "stratified": float(prior @ share)}


def _execute(tasks: list[Task], datas: list[BenchData], spec: BenchSpec, config: dict):
    """Yield finished records, from worker processes when ``jobs`` > 1."""
    cores = cpu_count()  # the cores this process may use (cgroups, affinity)
    jobs = min(cores if spec.jobs is None else max(1, int(spec.jobs)), max(1, len(tasks)))
    common = {
        "n_classes": datas[0].n_classes,
        "sweep": spec.sweep,
        "val": float(spec.val),
        "head_params": spec.head_params or {},
        "config": config,
        "threads": max(1, cores // jobs),
    }
    y = datas[0].y
    if jobs == 1:
        X = {d.tap: d.X for d in datas}
        for task in tasks:
            yield from run_task(task, X[task.tap], y, common)
        return
    with tempfile.TemporaryDirectory(prefix="embedkit-bench-") as tmp:
        X = {}
        for i, d in enumerate(datas):  # written once and mapped: workers get a file name,
            np.save(Path(tmp) / f"{i}.npy", np.ascontiguousarray(d.X))  # not a pickled copy
            X[d.tap] = np.load(Path(tmp) / f"{i}.npy", mmap_mode="r")
        parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered",
                            max_nbytes="1M", mmap_mode="r")  # fmt: skip
        for records in parallel(delayed(run_task)(t, X[t.tap], y, common) for t in tasks):
            yield from records
