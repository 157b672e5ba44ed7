"""Helpers shared by the tests (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def run_cli(*args: str, timeout: float = 300, env: dict | None = None):
    """Run ``python -m embedkit ARGS`` in a subprocess; return the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [PYTHON, "-m", "embedkit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
    )


def cli(capsys, *args) -> subprocess.CompletedProcess:
    """Run ``embedkit ARGS`` in this process; return what :func:`run_cli` returns.

    The same ``main`` a real process runs, without a second interpreter importing
    onnxruntime, sklearn, skops and torch (1-2 s of CPU each); keep :func:`run_cli` for
    the tests whose point is the real process (a kill, a crash, a lock, import order, the
    network). ``capsys`` may be ``capfd``, which also sees what C libraries write. Warnings
    the command raises are appended to ``stderr`` as an interpreter's default filters
    would print them, so "one line on stderr" means here what it means in a process.
    """
    from embedkit.cli import main

    capsys.readouterr()  # start from empty buffers
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")  # then Python's default filters, which come first:
        for category in _HIDDEN_WARNINGS:
            warnings.filterwarnings("ignore", category=category)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors, --help, --version
            code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    err = captured.err + "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught
    )
    return subprocess.CompletedProcess(args, code, captured.out, err)


# Hidden by an interpreter's default warning filters (outside ``__main__``).
_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
