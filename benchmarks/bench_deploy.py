"""Predict on raw images against extract on the same images, side by side; writes results/deploy.md.

    .venv/bin/python benchmarks/bench_deploy.py                 # 1,000 JPEGs, 3 rounds
    .venv/bin/python benchmarks/bench_deploy.py --images 200 --rounds 1   # a quick look

EfficientNet-Lite0 (``embedkit export``) and a folder of 500x375 JPEGs (bench_extract's).
Heads (logreg, mlp) are trained on a store of 200 other JPEGs, then, in interleaved
rounds over the same ``--images`` JPEGs, each timed end to end in this process:

1. ``extract`` into a new store (the baseline: read, decode, preprocess, run, write);
2. ``predict(head_dir, folder)``: the recorded model checked by sha256, extract into a
   scratch store, the head loaded and applied;
3. ``predict(model.onnx, folder)`` on the model written by ``deploy`` (backbone + head).

It also reports how far the deployed model's probabilities are from backbone -> store ->
head on these images.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_extract import get_model, write_jpegs

from embedkit.cli import main as cli
from embedkit.deploy import deploy, predict
from embedkit.extract import extract

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def bench(work: Path, n_images: int, rounds: int, batch: int, heads: list[str]) -> list[str]:
    model, model_name = get_model(work)
    train = write_jpegs(work / "train", 200)
    images = write_jpegs(work / "images", n_images)  # the same generator: other crops
    extract(model, train, work / "train.h5", batch_size=batch, progress=False)
    deployed = {}
    for head in heads:
        assert cli(["train", str(work / "train.h5"), "--head", head, "--out",
                    str(work / head)]) == 0  # fmt: skip
        deployed[head] = work / f"{head}.onnx"
        deploy(work / head, deployed[head])
    times: dict[str, list[float]] = {"extract": []}
    parity = {}
    for r in range(rounds):  # interleaved, so drifting load hits every pipeline alike
        seconds, _ = timed(extract, model, images, work / f"e{r}.h5", batch_size=batch,
                           progress=False)  # fmt: skip
        times["extract"].append(seconds)
        for head in heads:
            seconds, by_head = timed(predict, work / head, images, batch_size=batch,
                                     progress=False)  # fmt: skip
            times.setdefault(f"predict {head}", []).append(seconds)
            seconds, by_model = timed(predict, deployed[head], images, batch_size=batch,
                                      progress=False)  # fmt: skip
            times.setdefault(f"deployed {head}", []).append(seconds)
            reference = predict(work / head, work / f"e{r}.h5")  # backbone -> store -> head
            parity[head] = (
                float(np.abs(by_model.probabilities - reference.probabilities).max()),
                sum(a != b for a, b in zip(by_model.labels, reference.labels)),
                by_head.ids == reference.ids == by_model.ids,
            )
        print(f"round {r}: " + ", ".join(f"{k} {n_images / v[-1]:.1f}" for k, v in times.items())
              + " img/s", flush=True)  # fmt: skip
    base = times["extract"]
    lines = [
        f"Model: {model_name}; {n_images} JPEGs (500x375 photos), batch {batch}, CPU provider, "
        f"{rounds} interleaved rounds (median); heads trained on 200 other JPEGs. Each call "
        "is timed end to end in one process (Python start-up excluded).",
        "",
        "| pipeline | images/s | vs extract (same-round ratios: median, range) |",
        "| --- | --- | --- |",
    ]
    for name, values in times.items():
        ratios = [b / v for b, v in zip(base, values)]
        kind, _, head = name.partition(" ")
        label = {
            "extract": "`extract` into a new store (the baseline)",
            "predict": f"`predict` with the {head} head directory (recorded model + head)",
            "deployed": f"`predict` with the deployed {head} model (one ONNX graph)",
        }[kind]
        lines.append(
            f"| {label} | {n_images / statistics.median(values):.1f} | "
            f"**{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f}x) |"
        )
    lines += [
        "",
        "Deployed model vs backbone -> store -> head on these images (last round): "
        + "; ".join(
            f"{h}: max abs diff of probabilities {d:.1e}, {n} labels differ, same ids {s}"
            for h, (d, n, s) in parity.items()
        )
        + ".",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--heads", default="logreg,mlp", help="comma-separated head names")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_deploy_"))
    try:
        lines = bench(work, args.images, args.rounds, args.batch_size, args.heads.split(","))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "## Deploy: predict on raw inputs",
            "",
            f"Machine: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}; "
            f"load average {load:.1f} at the end (other jobs share the cores: read the ratios). "
            f"Reproduce: `.venv/bin/python benchmarks/bench_deploy.py --images {args.images} "
            f"--rounds {args.rounds} --heads {args.heads}`.",
            "",
            *lines,
            "",
        ]
    )
    out = HERE / "results" / "deploy.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
