"""Predict on raw images against extract on the same images, side by side.

Writes one record per run to results/deploy.jsonl (benchmarks/_harness.py) and prints
its section of RESULTS.md; a run already recorded is skipped (--force re-runs).

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
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _harness import Records, measured_line, ratios, table, timed_rounds
from _inputs import get_model, write_jpegs

from embedkit.cli import main as cli
from embedkit.deploy import deploy, predict
from embedkit.extract import extract

HERE = Path(__file__).resolve().parent


def bench(work: Path, n_images: int, rounds: int, batch: int, heads: list[str]) -> dict:
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
    out: dict[str, object] = {}
    stores: list[Path] = []

    def run_extract():  # a new store each round: extract skips items a store holds
        stores.append(work / f"e{len(stores)}.h5")
        extract(model, images, stores[-1], batch_size=batch, progress=False)

    cases = {"extract": run_extract}
    for head in heads:
        cases[f"predict {head}"] = lambda h=head: out.update(
            {h: predict(work / h, images, batch_size=batch, progress=False)})  # fmt: skip
        cases[f"deployed {head}"] = lambda h=head: out.update(
            {f"d{h}": predict(deployed[h], images, batch_size=batch, progress=False)})  # fmt: skip
    seconds = timed_rounds(cases, rounds=rounds)  # interleaved: drifting load hits all alike
    parity = {}
    for head in heads:  # the last round's outputs against backbone -> store -> head
        reference = predict(work / head, stores[-1])
        by_model = out[f"d{head}"]
        parity[head] = {
            "max_abs_diff": float(np.abs(by_model.probabilities - reference.probabilities).max()),
            "labels_differ": sum(a != b for a, b in zip(by_model.labels, reference.labels)),
            "same_ids": out[head].ids == reference.ids == by_model.ids,
        }
    return {"model": model_name, "seconds": seconds, "parity": parity}


def render(records: list[dict]) -> str:
    """The section from the records (run_all.py --render calls this)."""
    lines = []
    for r in records:
        key, n = r["key"], r["key"]["images"]
        lines += [
            f"Model: {r['model']}; {n} JPEGs (500x375 photos), batch {key['batch_size']}, CPU "
            f"provider, {key['rounds']} interleaved rounds (median); heads trained on 200 other "
            "JPEGs. Each call is timed end to end in one process (Python start-up excluded).",
            "",
        ]
        rows = []
        for name, s in ratios(r["seconds"], "extract").items():
            kind, _, head = name.partition(" ")
            label = {
                "extract": "`extract` into a new store (the baseline)",
                "predict": f"`predict` with the {head} head directory (recorded model + head)",
                "deployed": f"`predict` with the deployed {head} model (one ONNX graph)",
            }[kind]
            spread = f"({s['ratio_min']:.2f}-{s['ratio_max']:.2f}x)"
            rows.append([label, f"{n / s['median_s']:.1f}", f"**{s['ratio']:.2f}x** {spread}"])
        lines += [
            table(
                ["pipeline", "images/s", "vs extract (same-round ratios: median, range)"], rows
            ),  # fmt: skip
            "",
            "Deployed model vs backbone -> store -> head on these images (last round): "
            + "; ".join(
                f"{h}: max abs diff of probabilities {p['max_abs_diff']:.1e}, "
                f"{p['labels_differ']} labels differ, same ids {p['same_ids']}"
                for h, p in r["parity"].items()
            )
            + ".",
            "",
            measured_line(r),
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--heads", default="logreg,mlp", help="comma-separated head names")
    parser.add_argument("--force", action="store_true", help="run even if recorded")
    args = parser.parse_args()
    records = Records("deploy")
    key = {"images": args.images, "rounds": args.rounds, "batch_size": args.batch_size,
           "heads": args.heads}  # fmt: skip
    if args.force or not records.done(key):
        work = Path(tempfile.mkdtemp(prefix="bench_deploy_"))
        try:
            data = bench(work, args.images, args.rounds, args.batch_size, args.heads.split(","))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        full = vars(args) == vars(parser.parse_args([]))  # a default run replaces the imported one
        records.add(key, {**data, "supersedes": "results/deploy.md" if full else None})
    print(records.section(render))


if __name__ == "__main__":
    main()
