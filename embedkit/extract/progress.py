"""Progress of an extraction: a tqdm bar on a terminal, a log line every few seconds elsewhere.

A job's log (``embedkit extract ... 2> extract.log``, a CI step, a notebook) gets lines like
``extract: 1,024/4,000 items (25.6%), 143.2 items/s, ETA 0:00:21`` instead of carriage
returns, at most one every ``every`` seconds, and one at the end (none after an error,
whose one-line message stays alone).
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from typing import TextIO


class LogProgress:
    """A tqdm-like counter (``update``, ``close``, context manager) that prints log lines.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with LogProgress(total=10, file=out, every=0) as bar:
    ...     bar.update(4)
    >>> out.getvalue().splitlines()[0].split(",")[0]
    'extract: 4/10 items (40.0%)'
    """

    def __init__(self, total: int, initial: int = 0, *, file: TextIO, every: float = 5.0):
        self.total, self.n, self.file, self.every = total, initial, file, every
        self._start_n = initial
        self._start = self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self._print(now)

    def _print(self, now: float) -> None:
        rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
        left = (self.total - self.n) / rate if rate > 0 else float("nan")
        eta = str(_dt.timedelta(seconds=round(left))) if left == left else "?"
        share = 100.0 * self.n / self.total if self.total else 100.0
        print(
            f"extract: {self.n:,}/{self.total:,} items ({share:.1f}%), {rate:.1f} items/s, "
            f"ETA {eta}",
            file=self.file,
            flush=True,
        )

    def close(self) -> None:
        self._print(time.perf_counter())

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:  # an error is reported on its own, as one line
            self.close()


def progress_bar(total: int, initial: int = 0, *, enabled: bool = True, every: float = 5.0):
    """A tqdm bar when stderr is a terminal, else :class:`LogProgress` (None: disabled)."""
    from tqdm import tqdm

    if not enabled or not total:
        return tqdm(total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, unit="item", file=sys.stderr, dynamic_ncols=True)
    return LogProgress(total, initial, file=sys.stderr, every=every)
