"""Argument types checked at parse time, and a parser whose errors are one line.

``type=`` helpers raise :class:`argparse.ArgumentTypeError`; argparse then names the
argument: ``embedkit train: error: argument --split-val: 1.5 is not a fraction in (0, 1)``.

    embedkit bench feats.h5 --jobs 0 --out b/    # exit 2, one line naming --jobs
"""

from __future__ import annotations

import argparse
import math
import sys


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one stderr line (no usage), exit code 2."""

    def error(self, message: str):
        message = " ".join(message.split())  # argparse messages may hold line breaks
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _number(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def float_in(inside, what: str, number: str | None = None):
    """A float type that refuses values where ``inside(value)`` is false: "TEXT is not WHAT"
    (``number``: what a text that is no number at all is not; default ``what``)."""

    def parse(text: str) -> float:
        value = _number(text, float, number or what)
        if not inside(value):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    return parse


def int_at_least(low: int, high: int | None = None):
    """An integer type that refuses values below ``low`` (``--folds``: 2, ``--jobs``: 1)
    and, when given, above the documented cap ``high`` (a typo must not run for hours)."""

    def parse(text: str) -> int:
        value = _number(text, int, "an integer")
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below the minimum {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is above the maximum {high}")
        return value

    parse.__name__ = f"int >= {low}" if high is None else f"int in [{low}, {high}]"
    return parse


# The documented ranges and caps (docs/reliability.md, "Arguments").
MAX_WAIT = 86400  # --wait: a day
fraction = float_in(lambda v: 0 < v < 1, "a fraction in (0, 1)")  # --make-test-split
fraction_or_zero = float_in(lambda v: 0 <= v < 1, "a fraction in [0, 1)")  # 0: none (--val)
similarity = float_in(
    lambda v: -1 <= v <= 1, "a cosine similarity in [-1, 1]", "a number in [-1, 1]"
)  # audit --dup-threshold
seconds = float_in(
    lambda v: 0 <= v <= MAX_WAIT, f"a wait in [0, {MAX_WAIT}] seconds", "a number of seconds"
)  # --wait
positive_int = int_at_least(1)  # --limit, audit --top-k: bounded by the data
count = int_at_least(0, 2**32 - 1)  # --seed: numpy's seed range
seeds = int_at_least(1, 1000)  # bench --seeds
folds = int_at_least(2, 100)  # bench/audit --folds
jobs = int_at_least(1, 1024)  # bench --jobs
batch_size = int_at_least(1, 65536)  # --batch-size, audit --block-size
workers = int_at_least(1, 256)  # --workers
top_k = int_at_least(1, 100_000)  # predict --top-k, audit --k
max_length = int_at_least(1, 65536)  # export --max-length


def add_input_options(p: argparse.ArgumentParser, **helps: str) -> None:
    """Add the options that read raw inputs, shared by ``extract`` and ``predict``.

    ``helps`` overrides the help text of an option, keyed by its dest (``labels=...``).
    """
    # fmt: off
    options = {  # dest: (flag, settings, help)
        "batch_size": ("--batch-size", {"type": batch_size, "default": 32},
                       "items per batch (default 32)"),
        "device": ("--device", {"choices": ("auto", "cpu", "cuda"), "default": "auto"},
                   "auto uses CUDA when onnxruntime-gpu offers it (default auto)"),
        "workers": ("--workers", {"type": workers, "default": None},
                    "threads preprocessing batches ahead of inference"),
        "text_column": ("--text-column", {"metavar": "C"}, "CSV/JSONL text column (default text)"),
        "label_column": ("--label-column", {"metavar": "C"},
                         "label column of a table (default label, when present)"),
        "column": ("--column", {"metavar": "C"}, "data column of a table: text, image bytes or "
                   "image paths relative to the file (default: the first of text, image, path)"),
        "id_column": ("--id-column", {"metavar": "C"}, "id column of a table (default id, when "
                      "present; else row numbers, PART:ROW in a folder of Parquet parts)"),
        "labels": ("--labels", {"metavar": "labels.npy"}, "labels for a .npy source"),
        "skip_bad": ("--skip-bad", {"action": "store_true"}, "leave out undecodable items"),
        "limit": ("--limit", {"type": positive_int, "metavar": "N"}, "use only the first N items"),
    }
    # fmt: on
    for dest, (flag, settings, text) in options.items():
        p.add_argument(flag, **settings, help=helps.get(dest, text))
