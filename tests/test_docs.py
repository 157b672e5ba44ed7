"""Documentation examples are tests: README blocks and every module's docstrings."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import embedkit

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


MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(embedkit.__path__, "embedkit.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_public_modules_have_examples():
    # Every package's public entry points carry at least one runnable example.
    for pkg in ("store", "extract", "heads", "bench", "audit", "backbones", "deploy"):
        attempted = 0
        for m in pkgutil.walk_packages(
            importlib.import_module(f"embedkit.{pkg}").__path__, f"embedkit.{pkg}."
        ):
            finder = doctest.DocTestFinder()
            attempted += sum(len(t.examples) for t in finder.find(importlib.import_module(m.name)))
        assert attempted > 0, pkg
