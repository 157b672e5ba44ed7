"""int8 drift on real texts: per-text cosine of an int8 graph to the fp32 features of a store.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/int8_drift.py models/bench/mpnet-int8.onnx \\
        stores/fortunes-mpnet.h5 --texts 1000                  # results/int8_drift.jsonl

The reference store holds the fp32 ONNX features of the same backbone (fp32 ONNX is within
3e-7 of torch); the int8 graph runs on the first ``--texts`` fortunes of the reference
split, in batches of 32 texts of similar length (as ``extract`` batches them), and each
text's cosine is the lowest over the store's taps. Not a timing: no bench lock needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
from _harness import Records
from bench_encoders import DATA, batches, cosines, session

from embedkit.contract import read_metadata

REPO = Path(__file__).resolve().parent.parent
MODELS, STORES = REPO / "models" / "bench", REPO / "stores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=str(MODELS / "mpnet-int8.onnx"),
                        help="the int8 ONNX graph")  # fmt: skip
    parser.add_argument("store", nargs="?", default=str(STORES / "fortunes-mpnet.h5"),
                        help="a store of the same backbone's fp32 features")  # fmt: skip
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--data", default=str(DATA), help="fortunes JSONL (id, text, label)")
    args = parser.parse_args()
    missing = [p for p in (args.model, args.store, args.data) if not Path(p).is_file()]
    if missing:
        print(f"skip: missing {', '.join(missing)} (build_reference_stores.py, bench_encoders.py)")
        return
    rows = [json.loads(line) for line in Path(args.data).open(encoding="utf-8")][: args.texts]
    rows.sort(key=lambda r: len(r["text"]))  # batches of similar length, as extract's
    meta = read_metadata(args.model)
    sess = session(Path(args.model), 2)
    feeds = batches([r["text"] for r in rows], Path(args.model), 32, file_order=True)  # sorted
    got = [sess.run(None, feed) for feed in feeds]
    outputs = [np.concatenate([g[i] for g in got]) for i in range(len(got[0]))]
    with h5py.File(args.store, "r") as f:
        index = {i.decode() if isinstance(i, bytes) else i: n for n, i in enumerate(f["ids"])}
        at = np.array([index[r["id"]] for r in rows])
        order = np.argsort(at)  # h5py reads sorted indices
        refs = []
        for tap in meta["embedkit.taps"]:
            feats = np.empty((len(at), f[f"features/{tap['name']}"].shape[1]), np.float32)
            feats[order] = f[f"features/{tap['name']}"][at[order]]
            refs.append(feats)
    cos = cosines(outputs, refs)
    scheme = (meta["embedkit.verify"].get("int8") or {}).get("scheme", "not recorded")
    figures = {"p1": float(np.percentile(cos, 1)), "min": float(cos.min()),
               "median": float(np.median(cos))}  # fmt: skip
    text = (
        f"{meta['embedkit.backbone']} int8 (scheme {scheme}) vs its fp32 features in "
        f"`{Path(args.store).name}`, first {len(rows):,} fortunes, lowest cosine over "
        f"{len(refs)} taps: p1 **{figures['p1']:.4f}**, min {figures['min']:.4f}, median "
        f"{figures['median']:.5f}. Reproduce: `python benchmarks/int8_drift.py MODEL STORE "
        f"--texts {args.texts}`."
    )
    key = {"backbone": meta["embedkit.backbone"], "scheme": scheme, "texts": args.texts}
    Records("int8_drift").add_markdown(key, text, **figures)
    print(text)


if __name__ == "__main__":
    main()
