"""Helpers shared by the tests (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

import os
import subprocess
import sys
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
    sklearn, skops and torch (about 4 s of CPU each); keep :func:`run_cli` for the tests
    whose point is the real process (its exit status, no traceback, a kill).
    """
    from embedkit.cli import main

    capsys.readouterr()  # start from empty buffers
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)
