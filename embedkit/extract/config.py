"""What an extraction is asked to do, and what it did: :class:`ExtractConfig` (every field
an ``embedkit extract`` option, checked when the config is made) and :class:`ExtractSummary`.

    embedkit extract lite0.onnx images/ --out feats.h5 --batch-size 64 --engine ray
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from embedkit.errors import UserInputError, check_known
from embedkit.extract.providers import DEVICES
from embedkit.store.format import SPLITS, STORAGE_DTYPES

ENGINES = ("local", "ray")  # extract/pipeline.py maps each name to its engine
RAY_SHARDS = ("auto", "driver")


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
    progress: bool = True  # stderr: a redrawn line on a terminal, else a log line every 5 s
    engine: str = "local"  # local (this process) or ray (actors on a Ray cluster)
    address: str | None = None  # ray: "auto" or HOST:PORT of a cluster; None starts a local one
    ray_shards: str = "auto"  # ray: how shards reach the store: auto (written in place when
    # the actor's node sees the store's folder, else sent to the driver) or driver (always sent)

    def __post_init__(self):
        for name, ok, what in _CHECKS:
            value = getattr(self, name)
            if not ok(value):
                raise UserInputError(f"{_flag(name)} {value!r}: pass {what}")
        if self.taps is not None:
            if isinstance(self.taps, str) or not all(isinstance(t, str) for t in self.taps):
                raise UserInputError(f"--tap {self.taps!r}: pass a sequence of tap names")
            object.__setattr__(self, "taps", tuple(self.taps))
        for name, default in (("address", None), ("ray_shards", "auto")):
            if getattr(self, name) != default and self.engine != "ray":
                raise UserInputError(
                    f"{_flag(name)} {getattr(self, name)} applies to --engine ray only; add it"
                )

    def __new__(cls, *args: Any, **options: Any) -> ExtractConfig:
        """Refuse an unknown option name (``replace`` comes here too) before ``__init__``.

        Examples
        --------
        >>> ExtractConfig(batchsize=64)
        Traceback (most recent call last):
        ...
        embedkit.errors.UserInputError: unknown extract option 'batchsize'; valid: ...
        """
        check_known(options, [f.name for f in fields(cls)], "extract option")
        return super().__new__(cls)


def _flag(name: str) -> str:
    """The option as ``embedkit extract`` spells it."""
    return {"taps": "--tap", "progress": "progress"}.get(name, "--" + name.replace("_", "-"))


def _count(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1


def _one_of(name: str, choices: tuple, optional: bool = False) -> tuple:
    ok = (lambda v: v is None or v in choices) if optional else (lambda v: v in choices)
    return name, ok, "one of: " + ", ".join(choices)


def _none_or(*types) -> Callable:
    return lambda v: v is None or isinstance(v, types)


_TEXTS = ("id_prefix", "text_column", "label_column", "column", "id_column", "address")
_COUNT = "an integer of at least 1"
# (field, accepts, what to pass instead): the one check of each option but --tap
_CHECKS = (
    ("batch_size", _count, _COUNT),
    *((n, lambda v: v is None or _count(v), _COUNT) for n in ("workers", "limit")),
    _one_of("device", DEVICES),
    _one_of("dtype", STORAGE_DTYPES),
    _one_of("engine", ENGINES),
    _one_of("ray_shards", RAY_SHARDS),
    _one_of("split", SPLITS, optional=True),
    *((n, _none_or(str), "a string") for n in _TEXTS),
    ("labels", _none_or(str, os.PathLike), "a .npy path"),
    ("preprocess", _none_or(str, os.PathLike, dict), "a JSON file, full-frame or a spec dict"),
    *(
        (n, lambda v: isinstance(v, bool | np.bool_), "True or False")
        for n in ("skip_bad", "progress")
    ),
)


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
