"""The docstring examples of embedkit.audit run (they are tests too)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["balance", "core", "exclude", "labels", "neighbors", "report"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"embedkit.audit.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name in ("balance", "exclude", "labels", "neighbors"):
        assert result.attempted > 0
