"""CPU session tuning for text, measured: threads, spinning, ORT's transformer fusion.

    .venv/bin/python benchmarks/bench_tuning.py --texts 400 --rounds 2   # results/tuning.jsonl
    .venv/bin/python benchmarks/bench_tuning.py --texts 2000 --int8      # the int8 export

The same length-bucketed batches of fortunes (extract's own plan) through MiniLM exported
fused (default) and with ``--no-optimize``; every variant round-robin in one process.
``--int8`` runs the int8 export instead: graph optimisation level, spinning and the token
budget per batch (``--batch-size`` x 1/2, 2, 4), against extract's setting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import Records, measured_line, table
from _inputs import sample_fortunes

from embedkit.extract import load_model
from embedkit.extract.batching import plan_batches
from embedkit.extract.preprocess import make_preprocessor

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def session(model: Path, threads: int, spinning: bool, level: str = "ALL", block: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if block:  # work-stealing blocks in the intra-op pool (ORT's default: static split)
        options.add_session_config_entry("session.dynamic_block_base", str(block))
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level}")
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="tune the int8 export")
    args = parser.parse_args()
    args.full_run = vars(args) == vars(parser.parse_args([]))
    if args.int8:
        return tune_int8(args)
    work = Path(tempfile.mkdtemp(prefix="bench_tuning_"))
    graphs = {}
    for name, extra in (("fused", []), ("plain", ["--no-optimize"])):
        out = work / f"{name}.onnx"
        cmd = [sys.executable, "-m", "embedkit", "export", "minilm", "--out", str(out), *extra]
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
        graphs[name] = out
    texts = sample_fortunes(args.texts)
    pre = make_preprocessor(load_model(graphs["fused"]), "text", "texts")
    plan = plan_batches(np.arange(len(texts)), args.batch_size, texts=texts, pre=pre)
    feeds = [plan.feed(b.tolist(), pre) for b in plan.batches]
    cores = len(os.sched_getaffinity(0))
    variants = {
        f"{g}, {t} thread{'s' * (t > 1)}, spinning {'on' if s else 'off'}": (graphs[g], t, s)
        for g in graphs
        for t in sorted({cores, 1}, reverse=True)
        for s in (False, True)
    }
    sessions = {k: (session(*v), feeds) for k, v in variants.items()}
    record(args, round_robin(sessions, args.rounds, len(texts)))


def record(args, medians: dict[str, float]) -> None:
    records = Records("tuning")
    key = {"texts": args.texts, "batch_size": args.batch_size, "rounds": args.rounds,
           "int8": args.int8}  # fmt: skip
    data = {"medians": medians, "cores": len(os.sched_getaffinity(0))}
    old = "results/tuning.md" if args.full_run else None  # what a default run replaces
    records.add(key, {**data, "supersedes": old})
    print(records.section(render))


def render(records: list[dict]) -> str:
    """One table per run (run_all.py --render calls this)."""
    lines = []
    for r in records:
        k, med = r["key"], r["medians"]
        base, kind = med[next(iter(med))], "int8" if k["int8"] else "fp32"
        lines += [
            f"### MiniLM {kind} session tuning, {k['texts']} fortunes ({r['created'][:10]})",
            "",
            f"Length-bucketed batches (batch size {k['batch_size']}), {r['cores']} cores, "
            f"{k['rounds']} round-robin rounds.",
            "",
            table(
                [f"MiniLM {kind} session", "texts/s (median)", "vs extract's setting (first row)"],
                [[name, f"{v:.1f}", f"{v / base:.2f}x"] for name, v in med.items()],
            ),  # fmt: skip
            "",
            measured_line(r),
            "",
        ]
    return "\n".join(lines)


def round_robin(variants: dict, rounds: int, n: int) -> dict[str, float]:
    """Median texts/s of each ``name: (session, feeds)``, one warm-up batch before each run."""
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (sess, feeds) in variants.items():
            sess.run(None, feeds[0])
            t0 = time.perf_counter()
            for feed in feeds:
                sess.run(None, feed)
            speeds[name].append(n / (time.perf_counter() - t0))
            print(f"{name}: {speeds[name][-1]:.1f} texts/s", flush=True)
    return {k: statistics.median(v) for k, v in speeds.items()}


def tune_int8(args) -> None:
    """int8 MiniLM: optimisation level, spinning and token budget, extract's setting first."""
    work = Path(tempfile.mkdtemp(prefix="bench_tuning_"))
    model = work / "int8.onnx"
    cmd = [sys.executable, "-m", "embedkit", "export", "minilm", "--out", str(model)]
    subprocess.run([*cmd, "--precision", "int8"], cwd=REPO, check=True, capture_output=True)
    texts = sample_fortunes(args.texts)
    pre = make_preprocessor(load_model(model), "text", "texts")
    todo, bs = np.arange(len(texts)), args.batch_size

    def feeds(batch: int) -> list:
        plan = plan_batches(todo, batch, texts=texts, pre=pre)
        return [plan.feed(b.tolist(), pre) for b in plan.batches]

    cores = len(os.sched_getaffinity(0))
    base = feeds(bs)
    variants = {
        f"ALL, spinning off, budget {bs} x mean (extract)": (session(model, cores, False), base),
        "ALL, spinning on": (session(model, cores, True), base),
        "EXTENDED, spinning off": (session(model, cores, False, "EXTENDED"), base),
        "BASIC, spinning off": (session(model, cores, False, "BASIC"), base),
        "ALL, spinning off, dynamic_block_base 4": (session(model, cores, False, block=4), base),
        **{
            f"ALL, spinning off, budget {b} x mean": (session(model, cores, False), feeds(b))
            for b in (bs // 2, 2 * bs, 4 * bs)
        },
    }
    record(args, round_robin(variants, args.rounds, len(texts)))


if __name__ == "__main__":
    main()
