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
    [
        "embedkit.store",
        "embedkit.extract",
        "embedkit.heads",
        "embedkit.bench",
        "embedkit.audit",
        "embedkit.deploy",
        "embedkit.cli",
        "embedkit.datasets",
    ],
)
def test_imports_without_torch(module):
    # torch, transformers and ray behave as if not installed: importing them raises ImportError.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'ray'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"import {module}\n"
        "from embedkit.cli import build_parser; build_parser()\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
