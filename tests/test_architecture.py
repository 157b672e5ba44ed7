"""The module layout's promises: one-way imports, and no torch where none is needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install 'embedkit[dev]')")
    result = subprocess.run([str(exe)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    "module",
    ["embedkit.store", "embedkit.extract", "embedkit.heads", "embedkit.cli", "embedkit.datasets"],
)
def test_imports_without_torch(module):
    # torch (and transformers) made unimportable: these modules must still import.
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        f"import {module}\n"
        "from embedkit.cli import build_parser; build_parser()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
