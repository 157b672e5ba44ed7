"""Progress of long work (extract, bench, audit, train): n of N, and an ETA from work done.

    embedkit extract minilm.onnx reviews.csv --out feats.h5   # extract: 120/1,000 items ...

The ETA divides the work left by the rate of work done since the first step (whose time
holds the start-up, e.g. loading a session), where *work* is what the caller says an
item costs (padded token cells for a text batch, one unit per image). On a terminal of
at least :data:`MIN_COLUMNS` columns the line is redrawn in place (at most every 0.2 s);
anywhere else one line is printed every ``every`` seconds and one at the end (none after
an error, whose one-line message stays alone).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from typing import TextIO

MIN_COLUMNS = 20  # a narrower (or 0-column) terminal gets log lines instead of a bar


class Progress:
    """A counter of ``total`` items (``update``, ``close``, context manager) with a work ETA.

    Parameters
    ----------
    what : str
        The prefix of each line: ``extract``, ``bench``, ...
    total : int
        Items to do (including ``initial``, those done before this run started).
    unit : str
        What an item is called: ``items``, ``runs``, ``folds``, ...
    initial : int
        Items already done (a resumed run); they do not count towards the rate.
    work_total : float, optional
        The work of the items still to do; ``update(n, work)`` then says how much each
        step did. None: every item is one unit of work.
    file : text stream
        Where lines go (stderr by default).
    every : float
        Seconds between log lines off a terminal.
    enabled : bool
        False: nothing is printed.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with Progress("extract", 10, file=out, every=0, work_total=100.0) as bar:
    ...     bar.update(4, work=10.0)
    >>> out.getvalue().splitlines()[0].split(",")[0]
    'extract: 4/10 items (40.0%)'
    """

    def __init__(
        self,
        what: str,
        total: int,
        *,
        unit: str = "items",
        initial: int = 0,
        work_total: float | None = None,
        file: TextIO | None = None,
        every: float = 5.0,
        enabled: bool = True,
    ):
        self.what, self.total, self.unit, self.n = what, int(total), unit, int(initial)
        self._initial = int(initial)
        self.file = file if file is not None else sys.stderr
        self.every, self.enabled = every, enabled and bool(total)
        self.work_total = float(work_total) if work_total is not None else None
        self.work = 0.0
        self._start = self._last = time.perf_counter()
        self._first: tuple[float, float] | None = None  # (time, work) at the first update
        self._columns = _columns(self.file) if self.enabled else 0
        self._drawn = False

    @property
    def bar(self) -> bool:
        """Whether lines are redrawn in place (a terminal of at least MIN_COLUMNS)."""
        return self._columns >= MIN_COLUMNS

    def update(self, n: int = 1, work: float | None = None) -> None:
        """``n`` more items done, costing ``work`` (default: ``n`` units)."""
        self.n += n
        self.work += n if work is None else float(work)
        if self._first is None:  # the rate counts from here: start-up (a model's session
            self._first = (time.perf_counter(), self.work)  # load) is not work
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last >= (0.2 if self.bar else self.every):
            self._last = now
            self._print(now)

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left at the rate of work done so far (None before any work)."""
        now = time.perf_counter() if now is None else now
        # without work_total, items are the work (resumed items are not counted)
        left = self.total - self.n if self.work_total is None else self.work_total - self.work
        since, done = self._start, self.work
        if self._first is not None and now - self._first[0] > 0 and self.work > self._first[1]:
            since, done = self._first[0], self.work - self._first[1]  # after the first step
        rate = done / max(now - since, 1e-9)
        return max(0.0, left / rate) if rate > 0 else None

    def line(self, now: float | None = None) -> str:
        """``what: n/N unit (p%), r unit/s, ETA h:mm:ss``."""
        now = time.perf_counter() if now is None else now
        rate = (self.n - self._initial) / max(now - self._start, 1e-9)
        eta = self.eta_seconds(now)
        eta_text = "?" if eta is None else str(_dt.timedelta(seconds=round(eta)))
        share = 100.0 * self.n / self.total if self.total else 100.0
        return (
            f"{self.what}: {self.n:,}/{self.total:,} {self.unit} ({share:.1f}%), "
            f"{rate:.1f} {self.unit}/s, ETA {eta_text}"
        )

    def _print(self, now: float) -> None:
        text = self.line(now)
        if self.bar:
            text = text[: self._columns - 1]
            print("\r" + text.ljust(self._columns - 1), end="", file=self.file, flush=True)
            self._drawn = True
        else:
            print(text, file=self.file, flush=True)

    def close(self) -> None:
        """Print the last line (and end the redrawn one)."""
        if not self.enabled:
            return
        self._print(time.perf_counter())
        if self._drawn:
            print(file=self.file, flush=True)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:  # an error is reported on its own, as one line
            self.close()
        elif self._drawn:
            print(file=self.file, flush=True)  # the error starts on a line of its own


def _columns(file) -> int:
    try:
        return os.get_terminal_size(file.fileno()).columns if file.isatty() else 0
    except (AttributeError, OSError, ValueError):
        return 0
