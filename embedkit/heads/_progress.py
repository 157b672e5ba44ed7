"""A progress line for long torch fits, plain text for logs and pipes (no carriage returns).

    embedkit train feats.h5 --head mlp --out head/      # a line every 10 s of training

:func:`epoch_progress` turns it on for the code inside it; the training loop calls
:func:`report_epoch` after every epoch. Torch-free, so ``from_store`` can use it for any head.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import sys
import time

_STATE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("progress", default=None)


@contextlib.contextmanager
def epoch_progress(*, enabled: bool = True, every_s: float = 10.0, stream=None):
    """Print one line per ``every_s`` seconds of epochs run inside this block (to stderr).

    Examples
    --------
    >>> with epoch_progress(enabled=False):
    ...     report_epoch({"epoch": 1, "train_loss": 0.5})
    """
    if not enabled:
        yield
        return
    token = _STATE.set({"every": every_s, "stream": stream, "last": time.perf_counter()})
    try:
        yield
    finally:
        _STATE.reset(token)


def report_epoch(record: dict, of: int | None = None) -> None:
    """Print ``record`` (one epoch of ``history_``) if progress is on and it is time.

    ``of``: the most epochs the fit may run; the line then says ``epoch n/N`` and an ETA
    at the mean epoch time so far (an upper bound: early stopping may end it sooner).
    """
    state = _STATE.get()
    if state is None:
        return
    state.setdefault("epoch_s", []).append(float(record.get("seconds") or 0.0))
    if time.perf_counter() - state["last"] < state["every"]:
        return
    state["last"] = time.perf_counter()
    epoch = record["epoch"]
    text = f"[train] epoch {epoch}" + (f"/{of}" if of else "")
    text += f": train loss {record['train_loss']:.4f}"
    if record.get("val_loss") is not None:
        text += f", val loss {record['val_loss']:.4f}, val accuracy {record['val_accuracy']:.4f}"
    if of and of > epoch:
        times = state["epoch_s"]
        left = (of - epoch) * sum(times) / max(1, len(times))
        text += f", ETA at most {datetime.timedelta(seconds=round(left))}"
    print(text, file=state["stream"] or sys.stderr, flush=True)
