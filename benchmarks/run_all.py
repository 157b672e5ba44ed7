"""Run the benchmarks and build benchmarks/RESULTS.md from their records.

    make bench                                        # every benchmark (hours), then RESULTS.md
    python benchmarks/run_all.py --only extract heads # these, then RESULTS.md
    python benchmarks/run_all.py --render             # RESULTS.md from the records only
    python benchmarks/run_all.py --list               # the areas and their scripts

Each benchmark appends JSON records to ``results/<area>.jsonl`` (``_harness.py``): the
numbers, the command, machine, load average, date and commit. RESULTS.md is this file's
intro followed by one section per area, rendered from the latest records of each key;
nothing in it is typed by hand. The scripts run one after the other, never in parallel
(they time things), with their defaults (``--list`` shows them); the command in a record
gives the arguments a section was measured with (``python benchmarks/<script> ...``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import RESULTS, Records  # noqa: E402

# Area -> (script, section title), in the order of RESULTS.md; no title: the section goes
# on under the one before. Notes say what a plain run needs.
AREAS = {
    "extract": ("bench_extract.py", "Extract"),
    "ray": ("bench_ray.py", "Ray engine"),  # ray[data] installed ('embedkit[ray]')
    "text": ("bench_text.py", "Text and image extraction speed"),  # + .venv-peers
    "tuning": ("bench_tuning.py", None),
    "gpu": ("bench_gpu.py", "GPU"),  # says there is no GPU and exits 0 on the CPU
    "backbones": ("bench_export.py", "Backbones: export and runtime speed"),
    "encoders": (
        "bench_encoders.py",
        "Text encoders: mpnet vs MiniLM, fp32 and int8, on real texts",
    ),
    "int8_kernels": ("bench_int8_kernels.py", None),  # one MatMul per int8 kernel
    "int8_drift": ("int8_drift.py", None),  # mpnet by default; skips without its store
    "cgrid": ("bench_cgrid.py", None),  # stores/fortunes-mpnet.h5 (skips without it)
    "mlp_defaults": ("bench_mlp_defaults.py", None),  # the 3 reference stores
    "heads": ("bench_heads.py", "Heads on cached features"),
    "protocol": ("bench_protocol.py", "Bench"),
    "reference": ("build_reference_stores.py", None),
    "layers": ("bench_layers.py", "Layers: which tap, which head"),
    "ceiling": ("fortunes_ceiling.py", None),
    "audit": ("bench_audit.py", "Audit"),
    "deploy": ("bench_deploy.py", "Deploy: predict on raw inputs"),
    "io": (
        "bench_io.py",
        "Data in and out: Parquet/Arrow sources, exports, CachedEncoder (issue 25)",
    ),
    "store": ("bench_store.py", "Store v2: shards + atomic index (issue 9)"),  # takes a section
    "store_open": ("bench_store_open.py", None),
    "recommend": (
        "bench_recommend.py",
        "Recommended pair vs the best cell of the same sweep (issue 21)",
    ),
    "eta": ("bench_eta.py", "ETA of a text extraction (issue 21)"),
    "labelling": ("bench_labelling.py", "Labelling"),
}
# The arguments of a plain run where a script needs some: one run per list.
RUNS = {
    "store": [["reads"], ["commit"], ["faults"]],
    "ceiling": [["--cache"], ["--test", "--write"]],
    "recommend": [["--run"]],
    "labelling": [["--part", part] for part in ("quality", "speed", "peers", "report")],
}
INTRO = """\
# Benchmark results

Rendered by `python benchmarks/run_all.py --render` from the records in
`benchmarks/results/<area>.jsonl`; do not edit by hand. Each record holds its numbers, the
command that measured them, the machine (cores, memory, CPU), the load average, the date
and the commit. Records marked `imported_from` hold results measured before the records
existed, taken over from that results file as they were written then.

Measured on this project's CI machine type: 2 CPU cores, 24 GiB, no GPU, shared with other
jobs. Absolute times on these shared machines are noisy; compare the ratios, which each
script measures side by side in one run. Re-run one section with
`python benchmarks/run_all.py --only AREA` (its defaults), or with the command its records
name, then `--render`.
"""


def render(results: Path = RESULTS) -> str:
    """RESULTS.md from the records under ``results``."""
    areas = [a for a in AREAS if (results / f"{a}.jsonl").exists()]
    areas += sorted(p.stem for p in results.glob("*.jsonl") if p.stem not in AREAS)
    parts = [INTRO]
    for area in areas:
        records = Records(area, results)
        needs_render = any("markdown" not in r for r in records.latest())
        text = records.section(_module(area).render if needs_render else None)
        title = AREAS.get(area, (None, area))[1]
        text = f"## {title}\n\n{text}" if title else text
        # Plots sit beside the records in results/; RESULTS.md is one folder up.
        parts.append(re.sub(r"\]\((?!https?:|/|results/)([^)]+\.png)\)", r"](results/\1)", text))
    return "\n".join(parts)


def _module(area: str):
    return importlib.import_module(Path(AREAS.get(area, (f"bench_{area}.py",))[0]).stem)


def measured_by(area: str, script: str, results: Path = RESULTS) -> list[str]:
    """The records of ``area``'s section measured otherwise than by its runner ``script``
    (another script, an ``embedkit`` command, or a command with placeholders): what
    ``--only AREA`` does not re-measure as it stands, each with the command it names."""
    notes = []
    for record in Records(area, results).latest():
        command = record["command"]
        named = re.findall(r"benchmarks/(\w+\.py)", command)
        other = named[:1] != [script]
        placeholder = re.search(r"(?<![\w-])(N|D|NAME=\S*|DIR)(?![\w-])|\.\.\.", command)
        if other or placeholder:
            why = (
                "placeholders in its command"
                if placeholder and not other
                else (
                    f"measured by {named[0]}"
                    if named
                    else "measured by a command outside benchmarks/"
                )
            )
            notes.append(f"{why}: `{command}`")
    return notes


def run(names: list[str]) -> None:
    for name in names:
        for args in RUNS.get(name, [[]]):
            command = [sys.executable, str(HERE / AREAS[name][0]), *args]
            print(f"== {' '.join(command[1:])}", flush=True)
            t0 = time.perf_counter()
            subprocess.run(command, check=True, cwd=HERE.parent)
            print(f"   {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(AREAS), metavar="AREA",
                   help=f"run only these: {', '.join(AREAS)}")  # fmt: skip
    p.add_argument("--render", action="store_true", help="only build RESULTS.md from records")
    p.add_argument("--list", action="store_true", help="list the areas and their scripts")
    p.add_argument("--results", type=Path, default=RESULTS, help="the records' folder")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    if args.list:
        for area, (script, _) in AREAS.items():
            runs = RUNS.get(area, [[]])
            print(f"{area:11} " + "; ".join(" ".join([script, *args]) for args in runs))
            for note in measured_by(area, script, args.results):
                print(f"{'':11}   {note}")
        return
    if not args.render:
        run(args.only or list(AREAS))  # every benchmark: hours on 2 cores
    args.out.write_text(render(args.results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
