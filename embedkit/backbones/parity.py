"""Verify an exported graph: onnx.checker, onnxruntime on fresh inputs vs torch fp32.

The fresh inputs have other batch (and sequence) sizes than the traced example; text
exports in fp16/int8 are also checked over a verification set. The report goes into the
ONNX metadata ``embedkit.verify``, and an export over tolerance fails unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from embedkit import contract as C
from embedkit.errors import ExportError, first_line


@dataclass(frozen=True)
class Tolerance:
    """When a variant passes verification: both bounds must hold on every tap."""

    max_abs: float  # on the largest |difference|, scaled by max(1, max|reference|)
    min_cosine: float  # per item, between ONNX and torch fp32 outputs


SET_P1_COSINE = {"fp16": 0.999, "int8": 0.99}  # text verification set, 1st percentile
TOLERANCES = {
    "fp32": Tolerance(max_abs=1e-3, min_cosine=0.99999),
    "fp16": Tolerance(max_abs=5e-2, min_cosine=0.999),
    "int8": Tolerance(max_abs=0.5, min_cosine=0.98),  # dynamic quantisation of weights
}


def compare(ours: list[np.ndarray], ref: list[np.ndarray], names: list[str]) -> dict:
    """Max abs difference and min per-item cosine of each output vs the reference.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.ones((2, 3), np.float32)
    >>> compare([a + 0.5], [a], ["t"])["min_cosine"]
    1.0
    """
    taps, worst_abs, worst_cos, scale = {}, 0.0, 1.0, 1.0
    for name, x, y in zip(names, ours, ref, strict=True):
        cos = _cosines(x, y)
        x = np.asarray(x, np.float64).reshape(len(y), -1)
        y = np.asarray(y, np.float64).reshape(len(y), -1)
        diff = float(np.abs(x - y).max()) if x.size else 0.0
        taps[name] = {"max_abs_diff": diff, "min_cosine": float(cos.min())}
        worst_abs, worst_cos = max(worst_abs, diff), min(worst_cos, float(cos.min()))
        scale = max(scale, float(np.abs(y).max()))
    return {
        "max_abs_diff": worst_abs,
        "min_cosine": round(worst_cos, 7),
        "ref_scale": scale,
        "taps": taps,
    }


def _cpu_session(model_bytes: bytes):
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=cpu, **C.session_kwargs(cpu))


def run_ort(model_bytes: bytes, feeds: dict[str, np.ndarray], session=None) -> list[np.ndarray]:
    """Run a serialized model once on the CPU execution provider (in ``session`` if given)."""
    session = _cpu_session(model_bytes) if session is None else session
    kinds = {i.name: i.type for i in session.get_inputs()}  # float16 inputs get float16
    feeds = {
        k: v.astype(np.float16) if kinds[k] == "tensor(float16)" else v
        for k, v in feeds.items()
        if k in kinds
    }
    return session.run(None, feeds)


def verify_set(model_bytes, feeds, references, names, precision, *, force=False) -> dict:
    """Per-item cosine to torch over a verification set run in batches; gate on its p1.

    ``feeds`` and ``references`` hold one entry per batch. An item's cosine is its lowest
    over the taps. Returns ``{"ran", "texts", "min_cosine", "p1_cosine", "median_cosine",
    "tolerance", "passed"}``; raises :class:`ExportError` when the 1st percentile is under
    ``SET_P1_COSINE[precision]`` and not ``force``.
    """
    worst = []
    try:
        session = _cpu_session(model_bytes)
        for feed, ref in zip(feeds, references, strict=True):
            outputs = run_ort(model_bytes, feed, session)
            per_tap = [_cosines(x, y) for x, y in zip(outputs, ref, strict=True)]
            worst.append(np.min(per_tap, axis=0))  # (n,) lowest over the taps
    except Exception as exc:  # an fp16 graph the CPU EP cannot run, as in verify()
        return {"ran": False, "passed": None, "reason": first_line(exc)}
    cos = np.concatenate(worst)
    limit = SET_P1_COSINE[precision]
    report = {
        "ran": True,
        "texts": int(len(cos)),
        "min_cosine": round(float(cos.min()), 6),
        "p1_cosine": round(float(np.percentile(cos, 1)), 6),
        "median_cosine": round(float(np.median(cos)), 7),
        "tolerance": {"p1_cosine": limit},
    }
    report["passed"] = report["p1_cosine"] >= limit
    if not report["passed"] and not force:
        raise ExportError(
            f"{precision} export drifts from torch fp32 on the {len(cos)}-text verification "
            f"set: p1 cosine {report['p1_cosine']:.5f} (limit {limit}), min "
            f"{report['min_cosine']:.5f}; use --force to keep it, or another --precision"
        )
    return report


def _cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(y), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return np.where(den > 0, (x * y).sum(1) / np.maximum(den, 1e-30), 1.0)


def verify(model_bytes, feeds, reference, names, precision, *, force=False) -> dict:
    """Check and run a serialized graph, compare with torch: ``{"ran", "max_abs_diff",
    "min_cosine", "passed", "taps", ...}`` (``ran`` False with a ``reason`` when the CPU EP
    cannot run an fp16 graph). ExportError when onnx.checker fails, or over tolerance and
    not ``force``."""
    model = onnx.load_from_string(model_bytes)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph fails onnx.checker: {first_line(exc)}") from exc
    tol = TOLERANCES[precision]
    try:
        outputs = run_ort(model_bytes, feeds)
    except Exception as exc:  # onnxruntime raises its own types (NOT_IMPLEMENTED, Fail)
        if precision != "fp16":
            raise ExportError(
                f"onnxruntime cannot run the exported {precision} graph: {first_line(exc)}"
            ) from exc
        return {
            "ran": False,
            "passed": None,
            "provider": "CPUExecutionProvider",
            "reason": f"CPU EP cannot run this fp16 graph: {first_line(exc)}; "
            "run it on a GPU, or export with --keep-io-types/--precision fp32",
        }
    report = compare(outputs, reference, names)
    report.update(ran=True, provider="CPUExecutionProvider")
    scaled = tol.max_abs * max(1.0, report["ref_scale"])
    report["tolerance"] = {"max_abs_diff": scaled, "min_cosine": tol.min_cosine}
    report["passed"] = report["max_abs_diff"] <= scaled and report["min_cosine"] >= tol.min_cosine
    if not report["passed"] and not force:
        hint = " (dynamic int8 suits transformer MatMuls, not convnets)" * (precision == "int8")
        raise ExportError(
            f"{precision} export differs from torch fp32: max abs diff "
            f"{report['max_abs_diff']:.3g} (limit {scaled:.3g}), min cosine "
            f"{report['min_cosine']:.6f} (limit {tol.min_cosine}){hint}; "
            "use --force to keep it, or another --precision"
        )
    return report
