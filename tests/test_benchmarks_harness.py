"""benchmarks/RESULTS.md is rendered from the records in benchmarks/results/*.jsonl.

The harness is run as the command a reader runs (``run_all.py --render``), never imported:
tests do not import benchmarks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def render(tmp_path: Path, results: Path = RESULTS) -> str:
    out = tmp_path / "RESULTS.md"
    command = [sys.executable, "benchmarks/run_all.py", "--render", "--results", str(results),
               "--out", str(out)]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    return out.read_text()


def test_results_md_is_what_the_records_render(tmp_path):
    committed = (REPO / "benchmarks" / "RESULTS.md").read_text()
    assert render(tmp_path) == committed, "run `python benchmarks/run_all.py --render`"


def test_every_result_is_a_record_with_its_command():
    assert not list(RESULTS.glob("*.md")), "results/ holds records; RESULTS.md is rendered"
    records = [json.loads(x) for p in RESULTS.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert len(records) > 40
    for r in records:
        assert r["command"] and r["created"] and "commit" in r["machine"], r["key"]
        assert "benchmarks/" in r["command"] or r["command"].startswith("embedkit "), r["command"]


def test_a_section_renders_the_latest_record_of_each_key(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()

    def record(key: str, body: str, command: str) -> dict:
        machine = {"cores": 2, "load": [1.5], "commit": "abc1234"}
        return {"area": "tiny", "key": {"part": key}, "command": command,
                "created": "2026-12-06T00:00:00Z", "machine": machine,
                "markdown": [body]}  # fmt: skip

    lines = [record("one", "stale", "python benchmarks/old.py"),
             record("two", "Second part.", "python benchmarks/two.py")]  # fmt: skip
    first = record("one", "", "python benchmarks/tiny.py --n 2")
    table = {"header": ["a", "b"], "align": ["---", "--:"], "rows": [["1", "`x|y`"], ["2", "z"]]}
    first["markdown"] = ["## Tiny\n\nTwo rows:\n", table, "\nEnd."]
    lines.append(first)  # the same key again: it replaces the stale record, in its place
    imported = {**record("old", "Imported figure 0.5.", "python benchmarks/x.py"),
                "imported_from": "results/x.md"}  # fmt: skip
    lines += [imported, {**record("new", "Re-run.", "python benchmarks/x.py"),
                         "supersedes": "results/x.md"}]  # fmt: skip
    (folder / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    page = render(tmp_path, folder)
    section = page[page.index("## Tiny") :]
    assert "stale" not in page and section.index("End.") < section.index("Second part.")
    assert "| a | b |\n| --- | --: |\n| 1 | `x|y` |\n| 2 | z |\n\nEnd." in section
    assert "`python benchmarks/tiny.py --n 2`" in section and "load 1.5" in section
    assert "Imported figure" not in page and "Re-run." in page  # superseded by a re-run


def test_a_benchmark_renders_its_own_records(tmp_path):
    """Records of numbers go through the script's render(): bench_eta's table here."""
    folder = tmp_path / "results"
    folder.mkdir()
    run = {"n": 1000, "batch_size": 32, "seconds": 9.5, "at_items": 144, "actual_left_s": 8.0,
           "eta_work_s": 9.6, "eta_items_s": 8.9, "error_work": 0.2, "error_items": 0.11,
           "first_batch_s": 1.5, "load_start": 2.0, "load_end": 2.0}  # fmt: skip
    record = {"area": "eta", "key": {"n": 1000, "batch_size": 32, "run": 0},
              "command": "python benchmarks/bench_eta.py --n 1000",
              "created": "2026-12-06T00:00:00Z", "machine": {"cores": 2, "commit": "abc1234"},
              **run}  # fmt: skip
    (folder / "eta.jsonl").write_text(json.dumps(record) + "\n")
    page = render(tmp_path, folder)
    assert "## ETA of a text extraction (issue 21)" in page
    assert "| ETA from work done (padded token cells; printed by `extract`) | 9.6 | +20% |" in page
    assert "`python benchmarks/bench_eta.py --n 1000`" in page
