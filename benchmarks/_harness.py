"""The one harness of benchmarks/: machine info, interleaved timed rounds, one JSON record
per run (``results/<area>.jsonl``) and the Markdown section rendered from those records.

Adopting it in ``benchmarks/bench_<area>.py`` (``bench_deploy.py`` is an example)::

    from _harness import Records, machine, timed_rounds

    records = Records("deploy")                   # results/deploy.jsonl -> results/deploy.md
    key = {"images": 1000, "heads": "logreg,mlp"} # what makes two runs the same run
    if not records.done(key):                     # a re-run skips what is recorded
        times = timed_rounds({"extract": f, "predict": g}, rounds=3)   # interleaved rounds
        records.add(key, {"seconds": times})      # + command, machine, load, time stamp
    records.render(render)                        # results/deploy.md from the records only

    def render(records: list[dict]) -> str:       # module level: run_all.py --build calls it
        ...                                       # a "## Section" of Markdown

Then ``python benchmarks/run_all.py --only deploy`` runs it, and ``run_all.py --build``
rebuilds RESULTS.md from the records without running anything. Run scripts from the
repository root with ``PYTHONPATH=$PWD``; they import ``_harness`` from their own folder.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


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
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE)  # fmt: skip
    info["commit"] = commit.stdout.strip() or None
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
    """The JSONL records of one benchmark area, and its rendered section."""

    def __init__(self, area: str, folder: Path = RESULTS):
        self.area, self.folder = area, Path(folder)
        self.path = self.folder / f"{area}.jsonl"

    def all(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def latest(self) -> list[dict]:
        """The last record of every key, in the order the keys were first recorded."""
        by_key: dict[str, dict] = {}
        for record in self.all():
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

    def render(self, render: Callable[[list[dict]], str]) -> Path:
        """Write ``results/<area>.md`` from the latest records (nothing typed by hand)."""
        out = self.folder / f"{self.area}.md"
        out.write_text(render(self.latest()).rstrip() + "\n")
        return out


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table.

    Examples
    --------
    >>> print(table(["a", "b"], [[1, "x"]]))
    | a | b |
    | --- | --- |
    | 1 | x |
    """
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def measured_line(record: dict) -> str:
    """One line under a table: the command, machine and load the record was measured with."""
    m = record["machine"]
    return (
        f"Measured by `{record['command']}` at commit {m.get('commit')} on {record['created']}: "
        f"{m['cores']} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB, Python {m['python']}; "
        f"load average {m['load'][0]:.1f} (shared machine: read the same-round ratios)."
    )


def _script_args() -> list[str]:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(HERE.parent)
    except ValueError:
        pass
    return [str(script), *sys.argv[1:]]
