"""Is the recommended (tap, head) pair worth trusting? Records in results/recommend.jsonl.

    .venv/bin/python benchmarks/bench_recommend.py --run --out runs/recommend
    .venv/bin/python benchmarks/bench_recommend.py --label before=DIR --label after=DIR

``--run`` benches the two reference stores the way the README's tap sweep does
(``embedkit bench STORE --taps all,joined --shots all --seeds 5``, default heads of a tap
sweep) into ``OUT/<store>``. Each bench folder, run here or named with ``--label
NAME=DIR`` (e.g. a folder written by an older embedkit), is summarised from its own
``results.md`` (the recommended pair, as that version picked it) and ``results.csv`` (the
best cell of the same sweep by test accuracy). Goal: the recommended pair's test score
within 0.01 of the best cell.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _harness import Records, table

ROOT = Path(__file__).resolve().parent.parent
STORES = {"fortunes": "stores/fortunes-minilm.h5", "fmnist": "stores/fmnist-lite0.h5"}
COMMAND = ["--taps", "all,joined", "--shots", "all", "--seeds", "5", "--quiet"]


def summarise(folder: Path) -> dict:
    """The recommended pair (from results.md) and the best cell (from results.csv)."""
    md = (folder / "results.md").read_text()
    pick = re.search(r"\*\*Recommended: tap `([^`]+)`, head `([^`]+)`\*\*", md)
    rows = [r for r in csv.DictReader((folder / "results.csv").open()) if r["tap"]]
    top = [r for r in rows if r["shots"] == "all"] or rows
    cell = {(r["tap"], r["head"]): r for r in top}
    best = max(top, key=lambda r: float(r["accuracy_mean"]))
    chosen = cell[(pick.group(1), pick.group(2))]
    return {
        "pick": f"`{chosen['tap']}` + {chosen['head']}",
        "pick_cv": _pm(chosen, "val_accuracy"),
        "pick_test": float(chosen["accuracy_mean"]),
        "best": f"`{best['tap']}` + {best['head']}",
        "best_test": float(best["accuracy_mean"]),
        "gap": float(best["accuracy_mean"]) - float(chosen["accuracy_mean"]),
        "heads": ", ".join(dict.fromkeys(r["head"] for r in top)),
    }


def _pm(row: dict, key: str) -> str:
    mean, hi = row.get(f"{key}_mean"), row.get(f"{key}_hi")
    if not mean:
        return "n/a"
    return f"{float(mean):.3f}" + (f" ± {float(hi) - float(mean):.3f}" if hi else "")


def run(out: Path) -> list[tuple[str, Path, dict]]:
    done = []
    for name, store in STORES.items():
        folder = out / name
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "embedkit", "bench", str(ROOT / store),
                        "--out", str(folder), "--overwrite", *COMMAND],
                       check=True, cwd=ROOT)  # fmt: skip
        extra = {"wall_s": time.perf_counter() - start, "load": (load, os.getloadavg()[0])}
        done.append((f"{name} (this version)", folder, extra))
    return done


def render(records: list[dict]) -> str:
    """One row per summarised bench folder (run_all.py --render calls this)."""
    rows = []
    for r in records:
        s, extra = r["summary"], r["extra"]
        wall = (f"{extra['wall_s']:.0f} ({extra['load'][0]:.1f} to {extra['load'][1]:.1f})"
                if extra.get("wall_s") else extra.get("note", "-"))  # fmt: skip
        rows.append([f"{r['key']['bench']} ({r['created'][:10]})", s["heads"], s["pick"],
                     s["pick_cv"], f"{s['pick_test']:.3f}", s["best"], f"{s['best_test']:.3f}",
                     f"{s['gap']:.3f}", wall])  # fmt: skip
    header = ["bench", "heads", "recommended pair", "its CV (or val) accuracy", "its test",
              "best cell", "best test", "gap", "wall s (load)"]  # fmt: skip
    return "\n".join([
        f"`embedkit bench STORE {' '.join(COMMAND[:-1])}` on the reference stores; the pick "
        "as each version makes it; the best cell by test accuracy (shown, never picked on). "
        "Goal: the gap at most 0.01.", "",
        table(header, rows, ["---"] * 3 + ["---:"] * 2 + ["---", "---:", "---:", "---"]), "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="bench both reference stores")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recommend")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=DIR[=NOTE]",
                        help="summarise an existing bench folder as row NAME")  # fmt: skip
    args = parser.parse_args()
    items = []
    for item in args.label:
        name, folder, *note = item.split("=", 2)
        items.append((name, Path(folder), {"note": note[0] if note else "-"}))
    if args.run:
        items += run(args.out)
    records = Records("recommend")
    for label, folder, extra in items:
        records.add({"bench": label}, {"summary": summarise(folder), "extra": extra})
    print(records.section(render))


if __name__ == "__main__":
    main()
