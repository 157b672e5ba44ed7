"""README examples are tests: every ```python block that runs offline is executed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# Blocks that need exported models and data folders are exercised by the demo and the
# extract/backbones tests; the rest run here.
RUNNABLE = [b for b in BLOCKS if "images/" not in b]


def test_readme_has_runnable_examples():
    assert len(RUNNABLE) >= 1


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_block_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {"__name__": "readme"})


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_readme_cli_commands_exist():
    from embedkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    used = set(re.findall(r"^embedkit (\w+)", README.read_text(), flags=re.M))
    assert used and used <= set(sub.choices), sorted(used - set(sub.choices))
