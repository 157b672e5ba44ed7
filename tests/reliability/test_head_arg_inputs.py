"""Tampered heads, bad head parameters and out-of-range arguments through the real CLI.

Each area's table runs in one subprocess (see harness.py); a failure lists every case that
went wrong with its arguments and stderr.
"""

from __future__ import annotations

import pytest

from tests.reliability.cases_args import arg_cases
from tests.reliability.cases_heads import head_cases
from tests.reliability.harness import report, run_cases
from tests.reliability.test_extract_inputs import AREAS as EXTRACT_AREAS

AREAS = {"heads": head_cases, "arguments": arg_cases}


def test_case_names_are_unique_across_the_battery():
    names = [case.name for b in (*EXTRACT_AREAS.values(), *AREAS.values()) for case in b()]
    assert len(names) == len(set(names)) and len(names) >= 300, len(names)


@pytest.mark.parametrize("area", list(AREAS))
def test_battery(area, assets, seeds, tmp_path):
    outcomes = run_cases(AREAS[area](), tmp_path, assets, seeds)
    failures = report(outcomes)
    assert not failures, f"{failures.count(chr(10) + '  argv') + 1} case(s) failed:\n{failures}"
