"""How true is extract's ETA? Writes results/eta.md and results/eta.json (issue 21).

    .venv/bin/python benchmarks/bench_eta.py --texts runs/bench-ref/data/fortunes.jsonl \\
        --model models/bench/minilm.onnx --n 1000

Extracts the first N texts of a JSONL file (the fortunes that
``build_reference_stores.py`` writes) into a fresh store, and records every progress
update of the run (time, items, work). At the first update past 10% of the items it
compares two ETAs with the time the run really had left: the one ``extract`` prints
(work done: padded token cells of the length-bucketed batches) and the old one (items
done at a constant item rate). The goal of issue 21: within 25% of the real time left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(texts: Path, model: Path, n: int, batch_size: int) -> dict:
    from embedkit.extract import extract
    from embedkit.progress import Progress

    updates = []
    original = Progress.update

    def recording(self, k=1, work=None):
        original(self, k, work)
        if self.what == "extract":
            updates.append((time.perf_counter(), self.n, self.work, self.eta_seconds()))

    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "texts.jsonl"
        lines = texts.read_text(encoding="utf-8").splitlines()[:n]
        subset.write_text("\n".join(lines) + "\n", encoding="utf-8")
        Progress.update = recording
        try:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            extract(model, subset, Path(tmp) / "s.h5", batch_size=batch_size, progress=False)
            end = time.perf_counter()
        finally:
            Progress.update = original
    total = updates[-1][1]
    at = next(u for u in updates if u[1] >= 0.1 * total)
    t, items, _, eta_work = at
    first = updates[0][0]  # rates count from the first batch, as the bar's clock does
    item_rate = items / max(t - start, 1e-9)
    eta_items = (total - items) / item_rate
    actual = end - t
    return {
        "n": total, "batch_size": batch_size, "seconds": end - start,
        "at_items": items, "actual_left_s": actual, "eta_work_s": eta_work,
        "eta_items_s": eta_items, "error_work": eta_work / actual - 1,
        "error_items": eta_items / actual - 1, "first_batch_s": first - start,
        "load_start": load, "load_end": os.getloadavg()[0], "cores": os.cpu_count(),
        "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["benchmarks/bench_eta.py", *sys.argv[1:]]),
    }  # fmt: skip


def markdown(r: dict) -> str:
    return f"""## ETA of a text extraction (issue 21)

`{r["command"]}`: {r["n"]:,} fortunes through MiniLM (fp32, batch size {r["batch_size"]},
length-bucketed batches, shortest first), {r["seconds"]:.1f} s on {r["cores"]} cores; load
average {r["load_start"]:.1f} at the start, {r["load_end"]:.1f} at the end.

| at {r["at_items"]:,} of {r["n"]:,} items | seconds left | error |
| --- | ---: | ---: |
| real time left | {r["actual_left_s"]:.1f} | |
| ETA from work done (padded token cells; printed by `extract`) | {r["eta_work_s"]:.1f} \
| {r["error_work"]:+.0%} |
| ETA from items done (before issue 21) | {r["eta_items_s"]:.1f} | {r["error_items"]:+.0%} |

Goal: the printed ETA at 10% within 25% of the real time left.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=Path, required=True, help="a JSONL of texts")
    parser.add_argument("--model", type=Path, required=True, help="the MiniLM ONNX export")
    parser.add_argument("--n", type=int, default=1000, help="texts to extract (default 1000)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    record = measure(args.texts, args.model, args.n, args.batch_size)
    out = HERE / "results"
    (out / "eta.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "eta.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
