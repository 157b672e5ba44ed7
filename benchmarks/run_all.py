"""Run every benchmark and gather their sections into benchmarks/RESULTS.md.

    make bench                                   # all of them
    .venv/bin/python benchmarks/run_all.py --only extract heads
    .venv/bin/python benchmarks/run_all.py --build   # only re-gather results/*.md

Each ``bench_<area>.py`` writes ``results/<area>.md``; this script runs them one after the
other (never in parallel: they time things) and concatenates the sections. A benchmark on
the harness (``_harness.py``) writes records to ``results/<area>.jsonl`` and defines
``render(records)``: the build step renders its section from those records. Every
``bench_*.py`` here can be run with ``--only <area>``, listed in SCRIPTS or not.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = (
    "extract", "ray", "text", "tuning", "gpu", "backbones", "encoders", "heads", "protocol",
    "reference", "layers", "audit", "deploy", "io",
)  # fmt: skip
SCRIPTS = {
    "extract": "bench_extract.py",
    "ray": "bench_ray.py",
    "text": "bench_text.py",  # + sentence-transformers' ONNX backend from .venv-peers
    "tuning": "bench_tuning.py",
    "gpu": "bench_gpu.py",  # says there is no GPU and exits 0 on the CPU
    "backbones": "bench_export.py",
    "encoders": "bench_encoders.py",  # mpnet vs MiniLM; skips where mpnet is not installed
    "heads": "bench_heads.py",
    "protocol": "bench_protocol.py",
    "reference": "build_reference_stores.py",
    "layers": "bench_layers.py",
    "audit": "bench_audit.py",
    "deploy": "bench_deploy.py",
    "io": "bench_io.py",  # Parquet/Arrow sources, store export, CachedEncoder
}
SECTIONS = (
    "extract", "ray", "speed", "backbones", "encoders", "heads", "bench", "layers", "audit",
    "deploy", "io",
    "store",  # written by hand from bench_store.py's JSON records (it takes a section argument)
    "recommend",  # bench_recommend.py --run / --label (needs the before/after bench folders)
    "eta",  # bench_eta.py --texts --model (a JSONL of texts and the MiniLM export)
)  # fmt: skip


def scripts() -> dict[str, str]:
    """SCRIPTS, then every other ``bench_<area>.py`` of this folder under its area."""
    found = {p.stem.removeprefix("bench_"): p.name for p in sorted(HERE.glob("bench_*.py"))}
    return {**SCRIPTS, **{k: v for k, v in found.items() if v not in SCRIPTS.values()}}


def render_from_records() -> list[str]:
    """Re-render ``results/<area>.md`` of every benchmark that keeps records."""
    sys.path.insert(0, str(HERE))
    from _harness import Records

    done = []
    for area, name in scripts().items():
        records = Records(area)
        if not records.path.exists():
            continue
        module = importlib.import_module(Path(name).stem)
        if hasattr(module, "render"):
            records.render(module.render)
            done.append(area)
    return done


def run(names: list[str]) -> None:
    for name in names:
        script = HERE / scripts()[name]
        if not script.exists():
            print(f"skip {name}: {script.name} not found", flush=True)
            continue
        print(f"== {script.name}", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(script)], check=True, cwd=HERE.parent)
        print(f"   {time.perf_counter() - t0:.0f} s", flush=True)


def build() -> Path:
    rendered = render_from_records()
    if rendered:
        print(f"rendered from records: {', '.join(rendered)}")
    parts = [
        "# Benchmark results\n",
        "Measured on this project's CI machine type: 2 CPU cores, 24 GiB, no GPU "
        f"(Python {platform.python_version()}). Absolute times on these shared machines are "
        "noisy; compare the ratios, which each script measures side by side in one run.\n",
        "Reproduce everything with `make bench`, or one section with the script named in it.\n",
    ]
    others = sorted(p.stem for p in (HERE / "results").glob("*.md") if p.stem not in SECTIONS)
    for name in (*SECTIONS, *others):  # a new benchmark's section appears without a list edit
        path = HERE / "results" / f"{name}.md"
        if path.exists():
            # Plots sit beside the sections in results/; RESULTS.md is one folder up.
            text = re.sub(
                r"\]\((?!https?:|/|results/)([^)]+\.png)\)", r"](results/\1)", path.read_text()
            )
            parts.append(text.strip() + "\n")
    out = HERE / "RESULTS.md"
    out.write_text("\n".join(parts))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=list(scripts()), help="run only these")
    p.add_argument("--build", action="store_true", help="only gather results/*.md")
    args = p.parse_args()
    if not args.build:
        run(args.only or list(ORDER))  # the others take arguments: run them with --only
    print(f"wrote {build()}")


if __name__ == "__main__":
    main()
