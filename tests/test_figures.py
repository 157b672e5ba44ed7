"""Every figure in the README's results table has a benchmark result behind it (issue 21).

A number typed into the README by hand drifts from what the code does; each number of the
table's "figure" column must appear in benchmarks/RESULTS.md, which is rendered from the
records the benchmark scripts write (benchmarks/results/*.jsonl).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_figures() -> list[tuple[str, str]]:
    """(row, number) for each number in the figure column of "Results at a glance"."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]  # no header
    out = []
    for row in rows:
        figure = row.strip("| ").split(" | ", 1)[1]
        figure = re.sub(r"`[^`]*`", "", figure)  # tap names and commands are not figures
        out += [(row, n) for n in re.findall(r"\d+(?:[.,]\d+)*", figure)]
    return out


def results_text() -> str:
    return (REPO / "benchmarks" / "RESULTS.md").read_text()


def test_every_readme_figure_has_a_result_behind_it():
    corpus = results_text()
    figures = readme_figures()
    assert len(figures) > 10  # the table is there and has figures
    missing = [f"{n!r} in {row[:60]}..." for row, n in figures if n not in corpus]
    assert not missing, "figures with no result in benchmarks/results: " + "; ".join(missing)
