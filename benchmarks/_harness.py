"""The one harness of benchmarks/: machine info, interleaved timed rounds, one JSON record
per run (``results/<area>.jsonl``) and the Markdown section rendered from those records.

A benchmark ``bench_<area>.py`` on the harness (``bench_deploy.py`` is an example)::

    from _harness import Records, timed_rounds

    records = Records("deploy")                   # results/deploy.jsonl
    key = {"images": 1000, "heads": "logreg,mlp"} # what makes two runs the same run
    if not records.done(key):                     # a re-run skips what is recorded
        times = timed_rounds({"extract": f, "predict": g}, rounds=3)   # interleaved rounds
        records.add(key, {"seconds": times})      # + command, machine, load, date, commit
    print(records.section(render))                # its part of RESULTS.md, from the records

    def render(records: list[dict]) -> str:       # module level: run_all.py --render calls it
        ...                                       # Markdown from the records' numbers

A script whose report is Markdown lines records them with ``records.add_markdown(key,
text)``: the text is kept as blocks (tables as header + rows) and rendered back as is.
Results measured before the harness were imported the same way, each record marked
``imported_from`` with the command it was measured by; a new record with
``supersedes="results/x.md"`` replaces those imported from that file.

``python benchmarks/run_all.py --only deploy`` runs one benchmark and re-renders
RESULTS.md; ``run_all.py --render`` rebuilds RESULTS.md from the records, measuring nothing.
Run scripts from the repository root with ``PYTHONPATH=$PWD``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
Render = Callable[[list[dict]], str]


def machine() -> dict:
    """Where a record was measured: cores, memory, CPU model, Python, load, commit."""
    info = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
        cpu = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x]
        info["cpu"] = cpu[0].split(":", 1)[1].strip() if cpu else platform.processor()
    except (OSError, ValueError, IndexError):
        info["cpu"] = platform.processor()
    git = ["git", "-C", str(HERE.parent)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run([*git, "status", "--porcelain", "--", "embedkit", "benchmarks/*.py"],
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    info["commit"] = (commit.stdout.strip() + ("+changes" if changed else "")) or None
    return info


def timed_rounds(cases: Mapping[str, Callable[[], object]], rounds: int = 3,
                 warmup: int = 0) -> dict[str, list[float]]:  # fmt: skip
    """Seconds of each case per round, the cases interleaved within every round (so load
    that drifts hits them alike); compare cases by their same-round ratios.

    Examples
    --------
    >>> t = timed_rounds({"a": lambda: sum(range(1000)), "b": lambda: None}, rounds=2)
    >>> sorted(t), len(t["a"])
    (['a', 'b'], 2)
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def ratios(times: dict[str, list[float]], base: str) -> dict[str, dict]:
    """Per case: median seconds, and the median and range of ``base`` time / case time
    over the rounds (above 1: faster than ``base``)."""
    out = {}
    for name, values in times.items():
        r = [b / v for b, v in zip(times[base], values)]
        out[name] = {"median_s": statistics.median(values), "ratio": statistics.median(r),
                     "ratio_min": min(r), "ratio_max": max(r)}  # fmt: skip
    return out


class Records:
    """The JSONL records of one benchmark area, and its section of RESULTS.md."""

    def __init__(self, area: str, folder: Path = RESULTS):
        self.area, self.folder = area, Path(folder)
        self.path = self.folder / f"{area}.jsonl"

    def all(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def latest(self) -> list[dict]:
        """The last record of every key, in the order the keys were first recorded; records
        imported from a file that a later record ``supersedes`` are left out."""
        records = self.all()
        gone = {r["supersedes"] for r in records if r.get("supersedes")}
        by_key: dict[str, dict] = {}
        for record in records:
            if record.get("imported_from") not in gone:
                by_key[json.dumps(record["key"], sort_keys=True)] = record
        return list(by_key.values())

    def done(self, key: dict) -> bool:
        return any(r["key"] == key for r in self.all())

    def add(self, key: dict, data: dict) -> dict:
        """Append one record: the key, the data, and the command, machine and time."""
        record = {
            "area": self.area,
            "key": key,
            "command": shlex.join(["python", *_script_args()]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            **data,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def add_markdown(self, key: dict, text: str, **data) -> dict:
        """Record a report written as Markdown lines: its tables kept as header + rows."""
        return self.add(key, {**data, "markdown": blocks(text)})

    def section(self, render: Render | None = None) -> str:
        """This area's part of RESULTS.md: every latest record, in order, rendered.

        Records holding ``markdown`` (blocks) render as the Markdown they were made from; the others
        go, a run of them at a time, to the benchmark's ``render``.
        """
        parts: list[str] = []
        pending: list[dict] = []
        for record in [*self.latest(), None]:
            if pending and (record is None or "markdown" in record):
                if render is None:
                    raise ValueError(f"{self.path}: records without markdown need a render()")
                parts.append(render(pending).strip())
                pending = []
            if record is not None and "markdown" in record:
                parts.append(markdown(record["markdown"]).strip() + "\n\n" + provenance(record))
            elif record is not None:
                pending.append(record)
        return "\n\n".join(parts) + "\n"


def blocks(text: str) -> list:
    """Markdown as a list of blocks: text verbatim (a string), each pipe table as
    ``{"header": [...], "align": [...], "rows": [[...], ...]}``.

    Examples
    --------
    >>> blocks("Intro\\n\\n| a | b |\\n| --- | ---: |\\n| 1 | x |\\n\\nEnd")
    ['Intro\\n', {'header': ['a', 'b'], 'align': ['---', '---:'], 'rows': [['1', 'x']]}, '\\nEnd']
    """
    out: list = []
    lines = text.strip("\n").split("\n")
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) and _is_row(lines[j]):
            j += 1
        table = _table(lines[i:j]) if j - i >= 2 else None
        if table is not None:
            out.append(table)
            i = j
            continue
        j = max(j, i + 1)
        while j < len(lines) and not _is_row(lines[j]):
            j += 1
        if out and isinstance(out[-1], str):
            out[-1] += "\n" + "\n".join(lines[i:j])
        else:
            out.append("\n".join(lines[i:j]))
        i = j
    return out


def markdown(parts: list) -> str:
    """The Markdown of :func:`blocks`' output (tables in one layout)."""
    return "\n".join(p if isinstance(p, str) else table(p["header"], p["rows"], p["align"])
                     for p in parts)  # fmt: skip


def table(header: list[str], rows: list[list], align: list[str] | None = None) -> str:
    """A Markdown table.

    Examples
    --------
    >>> print(table(["a", "b"], [[1, "x"]]))
    | a | b |
    | --- | --- |
    | 1 | x |
    """
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def data_table(records: list[dict]) -> str:
    """The records' own fields (not key, command or machine) as one table, a row each,
    for benchmarks whose numbers need no prose: nested fields dotted, numbers to 4 digits.

    Examples
    --------
    >>> r = {"key": {}, "command": "c", "created": "2026-12-06T00:00:00Z", "machine": {}}
    >>> print(data_table([{**r, "rows": 10, "s": {"a": 0.123456}}]))
    | rows | s.a | date |
    | --- | --- | --- |
    | 10 | 0.1235 | 2026-12-06 |
    """
    flat = [_flat({k: v for k, v in r.items() if k not in _META}) for r in records]
    header = list(dict.fromkeys(k for row in flat for k in row))
    rows = [
        [_cell(row.get(k)) for k in header] + [r["created"][:10]] for row, r in zip(flat, records)
    ]
    return table([*header, "date"], rows)


def measured_line(record: dict) -> str:
    """One line under a table: the command, machine and load the record was measured with."""
    m = record["machine"]
    return (
        f"Measured by `{record['command']}` at commit {m.get('commit')} on {record['created']}: "
        f"{m['cores']} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB, Python {m['python']}; "
        f"load average {m['load'][0]:.1f} (shared machine: read the same-round ratios)."
    )


def provenance(record: dict) -> str:
    """The line under a record's Markdown: where it came from."""
    m, source = record["machine"], record.get("imported_from")
    load = f", load {m['load'][0]:g}" if m.get("load") else ""
    where = f"imported from {source}" if source else "recorded"
    return (f"<sub>Record {record['area']}.jsonl: `{record['command']}`; {where} "
            f"(commit {m.get('commit')}, {record['created'][:10]}{load}).</sub>")  # fmt: skip


_META = ("area", "key", "command", "created", "machine", "imported_from", "markdown")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return json.dumps(v)[:60]
    return "" if v is None else str(v)


def _is_row(line: str) -> bool:
    return line.startswith("|") and line.rstrip().endswith("|")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def _table(lines: list[str]) -> dict | None:
    header, align, *rows = [_cells(x) for x in lines]
    if not all(re.fullmatch(r":?-{3,}:?", a) for a in align) or len(align) != len(header):
        return None
    if any(len(r) != len(header) for r in rows):
        return None
    return {"header": header, "align": align, "rows": rows}


def _script_args() -> list[str]:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(HERE.parent)
    except ValueError:
        pass
    return [str(script), *sys.argv[1:]]
