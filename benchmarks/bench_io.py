"""Data in and out (issue 25): Parquet vs JSONL / image-folder extraction, the Parquet export
of a 1,000,000 x 384 store, and CachedEncoder's second fit.

    python benchmarks/bench_io.py texts  --n 100000 --rounds 2    # Parquet vs JSONL
    python benchmarks/bench_io.py images --n 10000 2500 --rounds 2  # Parquet bytes vs folder
    python benchmarks/bench_io.py export --rows 1000000 --dim 384
    python benchmarks/bench_io.py encoder --n 1000               # MiniLM, fit twice

Every extraction and export runs in its own subprocess, so its peak memory is its own
(``VmHWM``: peak resident pages, file-backed ones such as the mapped store included). Contenders
alternate within each round; ratios compare the best time of each. Each section appends
records (command, load average, machine) to ``results/io.jsonl`` (``_harness.py``); a
section's latest records replace its earlier ones in RESULTS.md. Run from the repository
root with ``PYTHONPATH=$PWD``, under the shared bench lock:
``flock /tmp/embedkit-bench.lock python benchmarks/bench_io.py ...``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import Records

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MINILM = REPO / "models" / "bench" / "minilm.onnx"  # override with --minilm


# -- the child side: one extraction or export, its time and peak memory ------------------
def child(argv: list[str]) -> None:
    kind, *args = argv
    if kind == "extract":
        from embedkit.extract import extract

        model, source, out, column = args
        s = extract(model, source, out, progress=False, column=column or None)
        print(json.dumps({"seconds": s.seconds, "n": s.n_computed, "peak_mb": _hwm_mb()}))
    else:
        from embedkit.store.read.export import export_store

        store, out = args
        t0 = time.perf_counter()
        summary = export_store(store, out)
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds, "n": summary.n_rows, "peak_mb": _hwm_mb()}))


def _hwm_mb() -> float:
    """This process's peak resident memory (VmHWM: its own address space since exec; the
    ``ru_maxrss`` a parent gets from ``wait4`` also counts the parent's pages at the fork)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def measure(*args: str) -> dict:
    """Run ``bench_io.py _child ARGS`` and return its record (seconds, n, peak_mb)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {' '.join(args)}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- data and models --------------------------------------------------------------------
def tiny_text_model(path: Path, minilm: Path, width: int = 32) -> Path:
    """MiniLM's tokenizer and preprocessing over an embedding table + masked mean (fast)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from embedkit.extract import load_model

    spec = load_model(minilm)
    vocab = 30522
    table = np.random.default_rng(0).normal(size=(vocab, width)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tokens"]),  # (N, S, W)
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),  # (N, S, 1)
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),  # (N, W)
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),  # (N, 1)
        helper.make_node("Div", ["total", "count"], ["sentence"]),
    ]
    inits = [numpy_helper.from_array(table, "emb"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([2], np.int64), "axis2")]  # fmt: skip
    graph = helper.make_graph(
        nodes, "tiny_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", "S"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", "S"])],
        [helper.make_tensor_value_info("sentence", TensorProto.FLOAT, ["N", width])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    pre = {**spec.preprocess.to_dict(), "inputs": ["input_ids", "attention_mask"]}
    meta = {"embedkit.format": "1", "embedkit.backbone": "tiny_minilm_tokens",
            "embedkit.preprocess": json.dumps(pre), "embedkit.tokenizer": spec.tokenizer,
            "embedkit.taps": json.dumps([{"name": "sentence", "output": "sentence",
                                          "shape": [width], "pooling": "mean"}])}  # fmt: skip
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def tiny_image_model(path: Path, size: int = 32) -> Path:
    """Conv(3->8, stride 2) + global average pool over ``size`` x ``size`` RGB."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixel_values", "w"], ["fmap"], strides=[2, 2], pads=[1] * 4),
         helper.make_node("GlobalAveragePool", ["fmap"], ["gap"]),
         helper.make_node("Flatten", ["gap"], ["pool"])],
        "tiny_image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    spec = {"kind": "image", "input": "pixel_values", "size": [size, size], "resize_shorter": None,
            "crop": None, "mean": [127.0] * 3, "std": [128.0] * 3, "color": "RGB",
            "layout": "NCHW", "interpolation": "bilinear", "dtype": "float32"}  # fmt: skip
    meta = {"embedkit.format": "1", "embedkit.backbone": "tiny_conv",
            "embedkit.preprocess": json.dumps(spec),
            "embedkit.taps": json.dumps([{"name": "pool", "output": "pool", "shape": [8],
                                          "pooling": "avg"}])}  # fmt: skip
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def short_texts(n: int) -> tuple[list[str], list[str]]:
    """``n`` short texts (fortunes cut at 100 characters, numbered) and their topics."""
    from embedkit.datasets import load_fortunes

    texts, topics = load_fortunes(REPO / "data" / "fortunes")
    order = np.random.default_rng(0).permutation(len(texts))
    texts, topics = [texts[i] for i in order], [topics[i] for i in order]
    return ([f"{texts[i % len(texts)][:100]} ({i})" for i in range(n)],
            [topics[i % len(texts)] for i in range(n)])  # fmt: skip


# -- sections ---------------------------------------------------------------------------
def bench_texts(args, work: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = tiny_text_model(work / "tiny_text.onnx", args.minilm)
    records = []
    for n in args.n:
        texts, topics = short_texts(n)
        jsonl = work / f"t{n}.jsonl"
        jsonl.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                                 for t, y in zip(texts, topics)))  # fmt: skip
        parquet = work / f"t{n}.parquet"
        pq.write_table(pa.table({"text": texts, "label": topics}), parquet, row_group_size=10_000)
        runs = _rounds(args.rounds, work, model, {"jsonl": (jsonl, ""), "parquet": (parquet, "")})
        records.append(_record("texts", n, runs, "jsonl", "parquet", jsonl, parquet,
                               model="tiny text graph (MiniLM tokenizer, 30522x32 embedding "
                               "+ masked mean)"))  # fmt: skip
    return records


def bench_images(args, work: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from embedkit.datasets import load_fashion_mnist

    model = tiny_image_model(work / "tiny_image.onnx")
    images, labels = load_fashion_mnist(REPO / "data" / "fashion-mnist", "test")
    records = []
    for n in args.n:
        folder = work / f"img{n}"
        blobs, names = [], []
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, "PNG")
            blobs.append(buf.getvalue())
            names.append(str(labels[i]))
            (folder / names[-1]).mkdir(parents=True, exist_ok=True)
            (folder / names[-1] / f"{i:05d}.png").write_bytes(blobs[-1])
        parquet = work / f"img{n}.parquet"
        pq.write_table(pa.table({"image": blobs, "label": names}), parquet, row_group_size=1000)
        runs = _rounds(args.rounds, work, model,
                       {"folder": (folder, ""), "parquet": (parquet, "image")})  # fmt: skip
        records.append(_record("images", n, runs, "folder", "parquet", folder, parquet,
                               model="tiny conv (3->8, stride 2, 32x32) + average pool; "
                               "Fashion-MNIST test images as PNG"))  # fmt: skip
    return records


def _rounds(rounds: int, work: Path, model: Path, sources: dict) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name in sources}
    for r in range(rounds):
        order = list(sources) if r % 2 == 0 else list(reversed(sources))
        for name in order:
            path, column = sources[name]
            out = work / f"{name}-{r}.h5"
            runs[name].append(measure("extract", str(model), str(path), str(out), column))
            shutil.rmtree(work / f"{out.name}.d", ignore_errors=True)
            out.unlink(missing_ok=True)
            print(name, runs[name][-1], flush=True)
    return runs


def _record(section, n, runs, base, ours, base_path, our_path, **extra) -> dict:
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    return {
        "section": section, "n": n, "runs": runs, "best_s": best,
        "speed_ratio": best[base] / best[ours],  # above 1: Parquet is faster
        "peak_mb": {k: max(r["peak_mb"] for r in v) for k, v in runs.items()},
        "bytes": {base: _size(base_path), ours: _size(our_path)}, **extra,
    }  # fmt: skip


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size


def bench_export(args, work: Path) -> list[dict]:
    from embedkit.store import FeatureStore, Fingerprint, TapInfo, commit_shards, write_shard

    store = work / "big.h5"
    fp = Fingerprint.create("bench", [TapInfo("pool", (args.dim,))], {"kind": "bench"})
    rng = np.random.default_rng(0)
    step = 100_000
    for lo in range(0, args.rows, step):
        hi = min(args.rows, lo + step)
        x = rng.normal(size=(hi - lo, args.dim)).astype(np.float32)
        labels = [str(i % 10) for i in range(lo, hi)]
        splits = ["test" if i % 5 == 0 else "train" for i in range(lo, hi)]
        shard = write_shard(work / "in", fp, [f"r{i}" for i in range(lo, hi)],
                            [f"{i:064d}" for i in range(lo, hi)], {"pool": x},
                            labels=labels, splits=splits)  # fmt: skip
        commit_shards(store, [shard], fp)
        shard.unlink()
    out = work / "big.parquet"
    run = measure("export", str(store), str(out))
    print("export", run, flush=True)
    checks = {"pandas": _check_pandas(store, out), "duckdb": _check_duckdb(store, out)}
    with FeatureStore(store) as fs:
        nbytes = fs.nbytes
    return [{"section": "export", "rows": args.rows, "dim": args.dim, "export": run,
             "store_bytes": nbytes, "parquet_bytes": out.stat().st_size,
             "identical": checks}]  # fmt: skip


def _check_pandas(store: Path, out: Path) -> str:
    import pandas as pd

    from embedkit.store import FeatureStore

    df = pd.read_parquet(out)
    x = np.stack(df["pool"].to_numpy())  # (N, dim) float32
    with FeatureStore(store) as fs:
        same = (x.tobytes() == fs.features("pool").tobytes()
                and df["id"].tolist() == fs.ids().tolist())  # fmt: skip
    return "bit-identical" if same else "DIFFERENT"


def _check_duckdb(store: Path, out: Path) -> str:
    try:
        import duckdb
    except ImportError:
        return "not run (pip install 'embedkit[io-peers]')"
    import pyarrow as pa

    from embedkit.store import FeatureStore

    reader = duckdb.sql(f"SELECT id, pool FROM read_parquet('{out}')").to_arrow_reader(65536)
    lo, same = 0, True
    with FeatureStore(store) as fs:
        ids = fs.ids()
        for batch in reader:
            n = batch.num_rows
            flat = batch.column(1).flatten() if isinstance(batch.column(1), pa.Array) else None
            x = np.asarray(flat.to_numpy(zero_copy_only=False), np.float32).reshape(n, -1)
            same &= x.tobytes() == fs.features("pool", rows=slice(lo, lo + n)).tobytes()
            same &= batch.column(0).to_pylist() == ids[lo : lo + n].tolist()
            lo += n
        same &= lo == len(fs)
    return "bit-identical" if same else "DIFFERENT"


def bench_encoder(args, work: Path) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from embedkit.sklearn import CachedEncoder

    class TimedEncoder(CachedEncoder):  # the same estimator, timing its own fit_transform
        def fit_transform(self, X, y=None, **fit_params):
            t0 = time.perf_counter()
            try:
                return super().fit_transform(X, y, **fit_params)
            finally:
                spent.append(time.perf_counter() - t0)

    texts, topics = short_texts(args.n)
    spent: list[float] = []
    fits = []
    for _ in range(2):
        pipe = make_pipeline(TimedEncoder(str(args.minilm), store=work / "cache.h5"),
                             LogisticRegression(max_iter=1000))  # fmt: skip
        t0 = time.perf_counter()
        pipe.fit(texts, topics)
        fits.append(time.perf_counter() - t0)
    return [{"section": "encoder", "n": args.n, "model": str(args.minilm.name),
             "fit_s": fits, "encoder_s": spent, "encoder_ratio": spent[1] / spent[0]}]  # fmt: skip


# -- records and the report -------------------------------------------------------------
def save(records: list[dict], load_start: str) -> None:
    meta = {"load_start": load_start, "load_end": _load(), "cpus": os.cpu_count(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    for r in records:
        key = {"section": r["section"], "n": r.get("n", r.get("rows")), "when": meta["when"]}
        Records("io").add(key, {**r, **meta})  # every run is kept: a row or paragraph each


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def render(records: list[dict]) -> str:
    """The section from the records (run_all.py --render calls this)."""
    lines = ["Each "
             "row names its command, time and load average (1/5/15 min, start -> end) on "
             f"a {records[0]['cpus'] if records else '?'}-core machine shared with other jobs. "
             "Peak memory is the child process's `VmHWM` (peak resident pages, the mapped "
             "store's included).", ""]  # fmt: skip
    for section, title in (("texts", "Parquet vs JSONL, short texts"),
                           ("images", "Parquet image bytes vs an image folder")):  # fmt: skip
        rows = [r for r in records if r["section"] == section]
        if not rows:
            continue
        base = "jsonl" if section == "texts" else "folder"
        lines += [f"### {title}", "", f"Model: {rows[0]['model']}.", "",
                  f"| items | {base} best s | parquet best s | speed ratio (parquet vs "
                  f"{base}) | peak MB {base} | peak MB parquet | file MB {base} / parquet "
                  "| command | load |", "|" + " ---: |" * 7 + " --- | --- |"]  # fmt: skip
        for r in rows:
            lines.append(
                f"| {r['n']:,} | {r['best_s'][base]:.2f} | {r['best_s']['parquet']:.2f} | "
                f"**{r['speed_ratio']:.2f}x** | {r['peak_mb'][base]:.0f} | "
                f"{r['peak_mb']['parquet']:.0f} | {r['bytes'][base] / 1e6:.1f} / "
                f"{r['bytes']['parquet'] / 1e6:.1f} | `{r['command']}` ({r['when']}) | "
                f"{r['load_start']} -> {r['load_end']} |"
            )
        lines.append("")
    for k, r in enumerate(r for r in records if r["section"] == "export"):
        lines += ["### Export to Parquet", ""] if k == 0 else []  # one heading, a paragraph a run
        lines += [
                  f"`{r['command']}` ({r['when']}; load {r['load_start']} -> {r['load_end']}): "
                  f"{r['rows']:,} x {r['dim']} float32 store ({r['store_bytes'] / 1e9:.2f} GB) "
                  f"-> {r['parquet_bytes'] / 1e9:.2f} GB Parquet in "
                  f"{r['export']['seconds']:.1f} s, "
                  f"**peak memory {r['export']['peak_mb']:.0f} MB**; read back by "
                  f"`pandas.read_parquet`: {r['identical']['pandas']}; by DuckDB "
                  f"(`read_parquet`, record batches): {r['identical']['duckdb']}.", ""]  # fmt: skip
    for k, r in enumerate(r for r in records if r["section"] == "encoder"):
        lines += (
            ["### CachedEncoder: the second fit", ""] if k == 0 else []
        )  # one heading, a paragraph a run
        lines += [
                  f"`{r['command']}` ({r['when']}; load {r['load_start']} -> {r['load_end']}): "
                  f"`make_pipeline(CachedEncoder({r['model']}, store=...), "
                  f"LogisticRegression())` fitted twice on the same {r['n']:,} texts. Time in "
                  f"the encoder: {r['encoder_s'][0]:.2f} s, then {r['encoder_s'][1]:.3f} s "
                  f"(**{100 * r['encoder_ratio']:.2f}%** of the first); whole fit "
                  f"{r['fit_s'][0]:.2f} s, then {r['fit_s'][1]:.2f} s.", ""]  # fmt: skip
    lines += [
        "### Reading these figures", "",
        "- Speed: a ratio above 1 means the Parquet source extracted faster than the same "
        "items from JSONL (texts) or from an image folder (images), best time of each.",
        "- Memory: the Parquet source holds the data column of at most 8 decoded row groups; "
        "every source also holds its listing (ids, sha256 digests, labels) and, for text, "
        "the token ids of the items to compute, which grow with the number of items, not "
        "with the bytes of the file. pyarrow itself adds about 70 MB once.",
        "- Export: peak memory includes the mapped store pages read since the last reopen "
        "(every 32,768 rows) and one 8,192-row chunk in NumPy and Arrow; the ids, labels and "
        "splits of all rows are held (tens of MB at 1M rows).",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sections = ("all", "texts", "images", "export", "encoder")
    parser.add_argument("section", nargs="?", default="all", choices=sections)
    parser.add_argument("--n", type=int, nargs="+", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--minilm", type=Path, default=MINILM, help="the MiniLM ONNX export")
    parser.add_argument("--tmp", type=Path, default=None, help="work folder (default: a temp)")
    args = parser.parse_args()
    if args.section == "all":  # what run_all.py (make bench) runs: every section, defaults
        for section in ("texts", "images", "export", "encoder"):
            subprocess.run([sys.executable, __file__, section], check=True)
        return
    defaults = {"texts": [100_000], "images": [10_000, 2_500], "encoder": [1_000]}
    args.n = args.n or defaults.get(args.section)
    if args.section == "encoder":
        args.n = args.n[0]
    load_start = _load()
    work = Path(tempfile.mkdtemp(prefix="bench-io-", dir=args.tmp))
    try:
        fn = {"texts": bench_texts, "images": bench_images, "export": bench_export,
              "encoder": bench_encoder}[args.section]  # fmt: skip
        save(fn(args, work), load_start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(Records("io").section(render))


if __name__ == "__main__":
    main()
