"""CPU session tuning for text, measured: threads, spinning, ORT's transformer fusion.

    .venv/bin/python benchmarks/bench_tuning.py --texts 400 --rounds 2   # writes results/tuning.md

The same length-bucketed batches of fortunes (extract's own plan) through MiniLM exported
fused (default) and with ``--no-optimize``; every variant round-robin in one process.
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
from bench_text import sample_fortunes

from embedkit.extract import load_model
from embedkit.extract.batching import plan_batches
from embedkit.extract.preprocess import make_preprocessor

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def session(model: Path, threads: int, spinning: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
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
    sessions = {k: session(*v) for k, v in variants.items()}
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, sess in sessions.items():
            sess.run(None, feeds[0])
            t0 = time.perf_counter()
            for feed in feeds:
                sess.run(None, feed)
            speeds[name].append(len(texts) / (time.perf_counter() - t0))
            print(f"{name}: {speeds[name][-1]:.1f} texts/s", flush=True)
    med = {k: statistics.median(v) for k, v in speeds.items()}
    base = med[next(iter(med))]
    lines = [
        f"{args.texts} fortunes, length-bucketed batches (batch size {args.batch_size}), "
        f"{args.rounds} round-robin rounds; load average {os.getloadavg()[0]:.1f} at the end. "
        f"Reproduce: `.venv/bin/python benchmarks/bench_tuning.py --texts {args.texts} "
        f"--rounds {args.rounds}`.",
        "",
        "| MiniLM fp32 session | texts/s (median) | vs extract's setting (first row) |",
        "| --- | --- | --- |",
        *(f"| {k} | {v:.1f} | {v / base:.2f}x |" for k, v in med.items()),
        "",
    ]
    (HERE / "results" / "tuning.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
