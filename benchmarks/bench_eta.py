"""How true is extract's ETA? One record per run in results/eta.jsonl (issue 21).

    python benchmarks/bench_eta.py --texts runs/bench-ref/data/fortunes.jsonl \\
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
import os
import tempfile
import time
from pathlib import Path

from _harness import Records, table

REPO = Path(__file__).resolve().parent.parent


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
        "load_start": load, "load_end": os.getloadavg()[0],
    }  # fmt: skip


def render(records: list[dict]) -> str:
    """One table per run (run_all.py --render calls this)."""
    lines = []
    for r in records:
        m = r["machine"]
        rows = [
            ["real time left", f"{r['actual_left_s']:.1f}", ""],
            ["ETA from work done (padded token cells; printed by `extract`)",
             f"{r['eta_work_s']:.1f}", f"{r['error_work']:+.0%}"],
            ["ETA from items done (before issue 21)", f"{r['eta_items_s']:.1f}",
             f"{r['error_items']:+.0%}"],
        ]  # fmt: skip
        lines += [
            f"`{r['command']}` ({r['created']}, commit {m.get('commit')}): {r['n']:,} fortunes "
            f"through MiniLM (fp32, batch size {r['batch_size']}, length-bucketed batches, "
            f"shortest first), {r['seconds']:.1f} s on {m['cores']} cores; load average "
            f"{r['load_start']:.1f} at the start, {r['load_end']:.1f} at the end.",
            "",
            table(
                [f"at {r['at_items']:,} of {r['n']:,} items", "seconds left", "error"],
                rows,
                ["---", "---:", "---:"],
            ),  # fmt: skip
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--texts",
        type=Path,
        help="a JSONL of texts",
        default=REPO / "runs" / "bench-ref" / "data" / "fortunes.jsonl",
    )
    parser.add_argument("--model", type=Path, help="the MiniLM ONNX export",
                        default=REPO / "models" / "bench" / "minilm.onnx")  # fmt: skip
    parser.add_argument("--n", type=int, default=1000, help="texts to extract (default 1000)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    records = Records("eta")
    data = measure(args.texts, args.model, args.n, args.batch_size)
    records.add({"n": args.n, "batch_size": args.batch_size, "run": len(records.all())}, data)
    print(records.section(render))


if __name__ == "__main__":
    main()
