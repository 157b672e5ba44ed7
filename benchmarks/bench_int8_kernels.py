"""One MatMul of mpnet's shapes in each int8 kernel the int8 schemes use, vs float32.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_int8_kernels.py   # results/int8_kernels.jsonl
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_int8_kernels.py --rows 4096 --threads 1,2

The ceiling of a whole-model int8 speed-up: a graph of one MatMul (``--rows`` tokens,
about a batch of 32 fortunes) on a random weight of each of mpnet's shapes (768 x 768 for
the attention projections, 768 x 3072 FFN in, 3072 x 768 FFN out), built by the same
functions as the export's schemes (``embedkit/backbones/int8.py``): ``dynamic``
(DynamicQuantizeMatMul, per-tensor activations) and ``MatMulNBits`` (8-bit blocks of 32,
int8 compute). Rounds interleave the kernels; the table shows median ratios to float32.
A second table times the residual + layer norm after each MatMul: as export writes it now
(``Add``, ``Add``, ``LayerNormalization``, in embedkit's CPU session, which keeps them apart:
``embedkit.contract.session_kwargs``), and as one ``SkipLayerNormalization``, the op
onnxruntime's transformer optimizer wrote before.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import onnx
from _harness import Records, ratios, timed_rounds
from onnx import helper, numpy_helper

from embedkit.backbones import int8

SHAPES = {"attention (768 x 768)": (768, 768), "FFN in (768 x 3072)": (768, 3072),
          "FFN out (3072 x 768)": (3072, 768)}  # fmt: skip


def matmul(k: int, n: int) -> onnx.ModelProto:
    """A graph ``y = x @ w`` with a random (k, n) weight; x is (rows, k)."""
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) * 0.05
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, k])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, n])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph([node], "mm", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def residual_norm(width: int = 768) -> onnx.ModelProto:
    """``LayerNormalization(x + bias + skip)`` as one ``SkipLayerNormalization``, the op
    onnxruntime's transformer optimizer writes (export then unfuses it)."""
    rng = np.random.default_rng(2)
    x, skip = (helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["batch", "seq", width])
               for n in ("x", "skip"))  # fmt: skip
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    weights = [numpy_helper.from_array(rng.normal(m, 0.1, width).astype(np.float32), n)
               for n, m in (("bias", 0), ("gamma", 1), ("beta", 0))]  # fmt: skip
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
                            ["y"], "norm", domain="com.microsoft", epsilon=1e-5)  # fmt: skip
    graph = helper.make_graph([node], "norm", [x, skip], [y], weights)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def norm_lines(args, ort, record: dict) -> list[str]:
    """The residual + layer norm, one fused op against the three export writes now."""
    from embedkit.backbones.variants import unfuse_skip_layer_norm
    from embedkit.contract import session_kwargs

    lines = [
        "",
        f"Residual + layer norm of ({args.rows}, 768) floats; ratio = fused time / unfused time:",
        "",
        "| threads | `SkipLayerNormalization` (as exported before), ms | `Add`, `Add`, "
        "`LayerNormalization` in embedkit's CPU session (now), ms | unfused vs fused |",
        "| --- | --- | --- | --- |",
    ]
    rng, cpu = np.random.default_rng(3), ["CPUExecutionProvider"]
    feed = {n: rng.standard_normal((1, args.rows, 768)).astype(np.float32) for n in ("x", "skip")}
    models = {"fused": residual_norm(), "unfused": unfuse_skip_layer_norm(residual_norm())}
    for threads in [int(t) for t in args.threads.split(",")]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        runs = {}
        for name, graph in models.items():
            model = graph.SerializeToString()
            sess = ort.InferenceSession(model, options, providers=cpu, **session_kwargs(cpu))
            runs[name] = lambda s=sess: s.run(None, feed)
        got = ratios(timed_rounds(runs, rounds=args.rounds, warmup=1), "fused")
        fused, unfused = got["fused"], got["unfused"]
        lines.append(
            f"| {threads} | {fused['median_s'] * 1e3:.1f} | "
            f"{unfused['median_s'] * 1e3:.1f} | **{unfused['ratio']:.2f}x** |"
        )
        record["norms"].append({"threads": threads, **got})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import onnxruntime as ort

    lines = [
        f"One MatMul of {args.rows} rows, median of {args.rounds} interleaved rounds; ratio = "
        "float32 time / int8 time (above 1: faster). Reproduce: `python "
        f"benchmarks/bench_int8_kernels.py --rows {args.rows} --threads {args.threads}`.",
        "",
        "| weight | threads | float32 ms | dynamic (DynamicQuantizeMatMul) | MatMulNBits "
        "(8-bit blocks of 32) |",
        "| --- | --- | --- | --- | --- |",
    ]
    x = {k: np.random.default_rng(1).standard_normal((args.rows, k)).astype(np.float32)
         for k, _ in SHAPES.values()}  # fmt: skip
    record = {"rows": [], "norms": []}
    for threads in [int(t) for t in args.threads.split(",")]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        for label, (k, n) in SHAPES.items():
            fp32 = matmul(k, n)
            graphs = {"fp32": fp32, "dynamic": int8._dynamic(fp32),
                      "nbits": int8._matmul_nbits(int8._named(fp32))}  # fmt: skip
            runs = {}
            for name, graph in graphs.items():
                sess = ort.InferenceSession(graph.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])  # fmt: skip
                runs[name] = lambda s=sess, k=k: s.run(None, {"x": x[k]})
            got = ratios(timed_rounds(runs, rounds=args.rounds, warmup=1), "fp32")
            lines.append(
                f"| {label} | {threads} | {got['fp32']['median_s'] * 1e3:.0f} | "
                f"**{got['dynamic']['ratio']:.2f}x** | **{got['nbits']['ratio']:.2f}x** |"
            )
            record["rows"].append({"weight": label, "threads": threads, **got})
    dyn = statistics.median(r["dynamic"]["ratio"] for r in record["rows"])
    lines += ["", f"Median over the rows: dynamic {dyn:.2f}x float32."]
    lines += norm_lines(args, ort, record)
    text = "\n".join(lines)
    key = {"rows": args.rows, "threads": args.threads, "rounds": args.rounds}
    Records("int8_kernels").add_markdown(key, text, **record)
    print(text)


if __name__ == "__main__":
    main()
