"""GPU extraction variants against a hand-written torch fp16 loop, in one call, one table.

    .venv/bin/python benchmarks/bench_gpu.py                     # results/gpu.jsonl
    .venv/bin/python benchmarks/bench_gpu.py --images 2048 --texts 4000 --rounds 3

Needs onnxruntime-gpu (``pip install 'embedkit[gpu]'``) and a CUDA torch; anywhere else it
says there is no GPU and exits 0. Every variant runs round-robin on the same card, on the
same data, and each is reported as items/s and as a ratio to the torch fp16 eager loop:

- EfficientNet-Lite0 (images, batch ``--batch-size``): ORT fp32 and fp16 graphs with plain
  ``session.run`` (host arrays in and out), IO binding with pinned host buffers and double
  buffering (batch i+1 is copied on a side stream while batch i runs), ``prefer_nhwc``, CUDA
  graphs (fixed batch shape, bound buffers replayed), and ``embedkit extract --device cuda``.
- MiniLM (text): ORT fp32 and fp16 on fixed batches in file order and on length buckets
  (extract's plan), and ``embedkit extract --device cuda``.
- The reference: the same torch backbone in fp16 (``.half()``, channels_last for images)
  fed from pinned memory, in eager mode. Text batches for torch are length-sorted as
  sentence-transformers does. A failing variant is reported with its error, not fatal.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import Records

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def gpu_missing() -> str | None:
    """Why there is nothing to measure here, or None when CUDA is usable."""
    try:
        import onnxruntime as ort
        import torch
    except ImportError as exc:
        return f"cannot import {exc.name}"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            f"onnxruntime has no CUDAExecutionProvider ({', '.join(ort.get_available_providers())})"
        )
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


def export(work: Path, name: str, precision: str) -> Path:
    out = work / f"{name}-{precision}.onnx"
    cmd = [sys.executable, "-m", "embedkit", "export", name, "--out", str(out)]
    cmd += ["--precision", precision] + (["--keep-io-types"] if precision == "fp16" else [])
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return out


def session(model: Path, **cuda_options):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [
        ("CUDAExecutionProvider", {"device_id": 0, **cuda_options}),
        "CPUExecutionProvider",
    ]
    return ort.InferenceSession(str(model), options, providers=providers)


def plain_run(model: Path, feeds: list[dict], **cuda_options):
    sess = session(model, **cuda_options)
    return lambda: [sess.run(None, f) for f in feeds]


def bound_run(model: Path, feeds: list[dict], out_dim: int, cuda_graph: bool = False, **opts):
    """IO binding: pinned host batches, copied on a side stream one batch ahead (double
    buffering), inputs and output bound to device buffers; with ``cuda_graph`` the shapes
    and addresses stay fixed and ORT replays the captured graph."""
    import torch

    sess = session(model, **({"enable_cuda_graph": "1"} if cuda_graph else {}), **opts)
    name = sess.get_inputs()[0].name
    output = sess.get_outputs()[0].name
    host = [torch.from_numpy(f[name]).pin_memory() for f in feeds]  # (N, ...) pinned
    shape = host[0].shape
    slots = [torch.empty(shape, dtype=host[0].dtype, device="cuda") for _ in range(2)]
    out = torch.empty((shape[0], out_dim), dtype=torch.float32, device="cuda")
    out_host = torch.empty(out.shape, dtype=torch.float32).pin_memory()
    copier = torch.cuda.Stream()
    bindings = []
    for slot in slots:  # one binding per buffer: fixed addresses, as CUDA graphs need
        b = sess.io_binding()
        b.bind_input(name, "cuda", 0, np.float32, list(shape), slot.data_ptr())
        b.bind_output(output, "cuda", 0, np.float32, list(out.shape), out.data_ptr())
        bindings.append(b)

    def run():
        with torch.cuda.stream(copier):
            slots[0].copy_(host[0], non_blocking=True)
        for i in range(len(host)):
            copier.synchronize()  # batch i is on the device
            if i + 1 < len(host):  # copy batch i+1 while batch i runs
                with torch.cuda.stream(copier):
                    slots[(i + 1) % 2].copy_(host[i + 1], non_blocking=True)
            sess.run_with_iobinding(bindings[i % 2])
            out_host.copy_(out)  # features back to the host (synchronous)

    return run


def torch_images(feeds: list[dict], name: str):
    import torch

    from embedkit.backbones import load_backbone

    model = load_backbone("efficientnet_lite0").model.half().cuda().eval()
    model = model.to(memory_format=torch.channels_last)
    host = [torch.from_numpy(f[name]).pin_memory() for f in feeds]

    def run():
        with torch.inference_mode():
            for x in host:
                x = x.cuda(non_blocking=True).half().to(memory_format=torch.channels_last)
                model(x).float().cpu()

    return run


def torch_text(texts: list[str], batch: int):
    import torch

    from embedkit.backbones import load_backbone

    bb = load_backbone("minilm")
    model = bb.model.half().cuda().eval()
    ordered = sorted(texts, key=len)  # as sentence-transformers sorts
    encoded = [
        {k: v.pin_memory() for k, v in bb.tokenizer(ordered[lo : lo + batch], padding=True,
         truncation=True, max_length=bb.max_length, return_tensors="pt").items()}
        for lo in range(0, len(ordered), batch)
    ]  # fmt: skip

    def run():
        with torch.inference_mode():
            for enc in encoded:
                enc = {k: v.cuda(non_blocking=True) for k, v in enc.items()}
                h = model(**enc).last_hidden_state  # (N, L, 384)
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                v = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1)
                v.float().cpu()

    return run


def extract_run(work: Path, model: Path, source: Path, batch: int):
    from embedkit.extract import extract

    def run():
        out = work / "gpu.h5"
        out.unlink(missing_ok=True)
        extract(model, source, out, batch_size=batch, device="cuda", progress=False)

    return run


def image_contenders(work: Path, n: int, batch: int) -> dict:
    from embedkit.extract import load_model
    from embedkit.extract.preprocess import make_preprocessor

    fp32, fp16 = (
        export(work, "efficientnet_lite0", "fp32"),
        export(work, "efficientnet_lite0", "fp16"),
    )
    images = np.random.default_rng(0).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    np.save(work / "images.npy", images)
    pre = make_preprocessor(load_model(fp32), "array", "images")
    n = n - n % batch  # fixed shapes for every variant (CUDA graphs need them)
    feeds = [
        pre.collate([pre.prepare(x) for x in images[lo : lo + batch]]) for lo in range(0, n, batch)
    ]
    name = next(iter(feeds[0]))
    rows = {"Lite0: torch fp16 eager loop (channels_last, pinned)": torch_images(feeds, name)}
    for tag, model in (("fp32", fp32), ("fp16", fp16)):
        rows[f"Lite0: ORT {tag}, session.run"] = plain_run(model, feeds)
        rows[f"Lite0: ORT {tag}, IO binding, pinned, double-buffered"] = bound_run(
            model, feeds, 1280
        )
        rows[f"Lite0: ORT {tag}, IO binding + prefer_nhwc"] = bound_run(
            model, feeds, 1280, prefer_nhwc="1"
        )
        rows[f"Lite0: ORT {tag}, IO binding + CUDA graph"] = bound_run(
            model, feeds, 1280, cuda_graph=True
        )
    rows["Lite0: `embedkit extract --device cuda` (fp32, from .npy)"] = extract_run(
        work, fp32, work / "images.npy", batch
    )
    return {"n": n, "rows": rows}  # fmt: skip


def text_contenders(work: Path, n: int, batch: int) -> dict:
    from _inputs import sample_fortunes

    from embedkit.extract import load_model
    from embedkit.extract.batching import plan_batches
    from embedkit.extract.preprocess import make_preprocessor

    texts = sample_fortunes(n)
    (work / "texts.txt").write_text("\n".join(texts) + "\n")
    rows = {"MiniLM: torch fp16 eager loop (length-sorted, pinned)": torch_text(texts, batch)}
    for tag in ("fp32", "fp16"):
        model = export(work, "minilm", tag)
        pre = make_preprocessor(load_model(model), "text", "texts")
        fixed = [pre.collate(texts[lo : lo + batch]) for lo in range(0, n, batch)]
        plan = plan_batches(np.arange(n), batch, texts=texts, pre=pre)
        buckets = [plan.feed(b.tolist(), pre) for b in plan.batches]
        rows[f"MiniLM: ORT {tag}, fixed batches in file order"] = plain_run(model, fixed)
        rows[f"MiniLM: ORT {tag}, length buckets"] = plain_run(model, buckets)
        rows[f"MiniLM: `embedkit extract --device cuda` ({tag})"] = extract_run(
            work, model, work / "texts.txt", batch
        )
    return {"n": n, "rows": rows}


def measure(groups: list[dict], rounds: int) -> list[str]:
    import torch

    lines = ["| variant | items/s (median) | vs torch fp16 eager |", "| --- | --- | --- |"]
    for group in groups:
        speeds: dict[str, list[float]] = {k: [] for k in group["rows"]}
        errors: dict[str, str] = {}
        for _ in range(rounds + 1):  # the first round warms up (cuDNN search, CUDA graphs)
            for name, run in group["rows"].items():
                if name in errors:
                    continue
                try:
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    run()
                    torch.cuda.synchronize()
                    speeds[name].append(group["n"] / (time.perf_counter() - t0))
                except Exception as exc:  # report the variant as failed, run the others
                    errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        ref = statistics.median(next(iter(speeds.values()))[1:] or [float("nan")])
        for name, values in speeds.items():
            if name in errors:
                lines.append(f"| {name} | failed: {errors[name]} | - |")
            else:
                speed = statistics.median(values[1:])
                lines.append(f"| {name} | {speed:.1f} | **{speed / ref:.2f}x** |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = gpu_missing()
    if reason is not None:
        print(f"bench_gpu: no GPU here ({reason}); nothing to measure")
        return 0
    import torch

    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    groups = [
        image_contenders(work, args.images, args.batch_size),
        text_contenders(work, args.texts, args.batch_size),
    ]
    lines = [
        f"GPU: {torch.cuda.get_device_name(0)}; {args.images} images (256x256 random, "
        f"preprocessed to 224), {args.texts} fortunes, batch {args.batch_size}, {args.rounds} "
        "round-robin rounds after one warm-up round. Reproduce: `.venv/bin/python "
        f"benchmarks/bench_gpu.py --images {args.images} --texts {args.texts} --rounds "
        f"{args.rounds}`.",
        "",
        *measure(groups, args.rounds),
        "",
    ]
    key = {"images": args.images, "texts": args.texts, "batch_size": args.batch_size,
           "rounds": args.rounds, "gpu": torch.cuda.get_device_name(0)}  # fmt: skip
    Records("gpu").add_markdown(key, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
