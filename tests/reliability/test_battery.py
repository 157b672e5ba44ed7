"""Bad images, text, arrays, ONNX models, specs, heads, arguments and stores through the real CLI.

Each area's table runs in the session's runner subprocess (see harness.py); a failure lists
every case that went wrong with its arguments and stderr.
"""

from __future__ import annotations

import pytest

from tests.reliability.cases_args import arg_cases
from tests.reliability.cases_arrow import arrow_cases
from tests.reliability.cases_caps import caps_cases
from tests.reliability.cases_data import array_cases, text_cases
from tests.reliability.cases_heads import head_cases
from tests.reliability.cases_images import image_cases
from tests.reliability.cases_integrity import integrity_cases
from tests.reliability.cases_models import model_cases, spec_cases
from tests.reliability.cases_outputs import output_cases
from tests.reliability.cases_stores import store_cases
from tests.reliability.cases_unclear import unclear_cases
from tests.reliability.harness import report, run_cases

AREAS = {
    "images": image_cases,
    "text": text_cases,
    "arrays": array_cases,
    "arrow": arrow_cases,
    "models": model_cases,
    "specs": spec_cases,
    "heads": head_cases,
    "arguments": arg_cases,
    "stores": store_cases,
    "outputs": output_cases,
    "integrity": integrity_cases,
    "caps": caps_cases,
    "unclear": unclear_cases,
}


def test_case_names_are_unique():
    names = [case.name for build in AREAS.values() for case in build()]
    assert len(names) == len(set(names)) and len(names) >= 400, len(names)


@pytest.mark.parametrize("area", list(AREAS))
def test_battery(area, assets, seeds, runner, tmp_path):
    outcomes = run_cases(AREAS[area](), tmp_path, assets, seeds, runner)
    failures = report(outcomes)
    assert not failures, f"{failures.count(chr(10) + '  argv') + 1} case(s) failed:\n{failures}"
