"""ONNX Runtime sessions: pick the execution provider, tune the session, run batches.

CUDA is used when onnxruntime-gpu offers it (``--device auto``); ``--device cuda``
without it is an error, never a silent fallback. On CUDA, batches go through IO
binding; on the CPU, a plain ``session.run`` with graph optimisations on and one
intra-op thread per core (or a set count: Ray's CPU actors run one thread each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError, require

DEVICES = ("auto", "cpu", "cuda")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
SPINNING = "0"  # session.intra_op.allow_spinning (benchmarks/results/speed.md, docs/extract.md)


def import_onnxruntime():
    """Import onnxruntime or raise a hint naming the extra to install."""
    return require("onnxruntime", "cpu", "extraction (or 'embedkit[gpu]' for onnxruntime-gpu)")


def select_providers(device: str = "auto") -> list[str]:
    """Return the ONNX Runtime providers for ``device`` (``auto``, ``cpu`` or ``cuda``).

    Examples
    --------
    >>> select_providers("cpu")
    ['CPUExecutionProvider']
    """
    if device not in DEVICES:
        raise UserInputError(f"--device {device!r} is not one of: {', '.join(DEVICES)}")
    if device == "cpu":
        return [_CPU]
    available = import_onnxruntime().get_available_providers()
    if _CUDA in available:
        return [_CUDA, _CPU]
    if device == "cuda":
        raise UserInputError(
            "CUDA is not available to onnxruntime (providers: "
            f"{', '.join(available)}): install embedkit[gpu] (onnxruntime-gpu) in place of "
            "onnxruntime, or pass --device cpu"
        )
    return [_CPU]


class Runner:
    """One ONNX Runtime session that maps a feed dict to the requested outputs.

    Examples
    --------
    >>> runner = Runner("model.onnx", ["pool"], device="cpu")  # doctest: +SKIP
    >>> runner.run({"pixel_values": x})["pool"].shape  # doctest: +SKIP
    (32, 1280)
    """

    def __init__(self, path: str | Path, outputs: list[str], *, device: str = "auto", threads=None):
        from joblib import cpu_count  # the cores this process may use (cgroups, affinity)

        ort = import_onnxruntime()
        self.providers = select_providers(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or cpu_count()  # Ray CPU actors: 1 each
        # Idle ORT threads would spin and starve the preprocessing and writer threads that
        # share the cores; batches are large, so waking costs nothing measurable.
        options.add_session_config_entry("session.intra_op.allow_spinning", SPINNING)
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserInputError(f"{path}: onnxruntime cannot load the model ({first})") from exc
        self.provider = self.session.get_providers()[0]
        if device == "cuda" and self.provider != _CUDA:  # ORT fell back without a word
            raise UserInputError(
                f"{path}: onnxruntime could not start CUDA (check the CUDA and cuDNN "
                "libraries onnxruntime-gpu needs), or pass --device cpu"
            )
        self.outputs = list(outputs)
        self._ort = ort

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; returns ``{output name: (n, ...) array}`` on the host."""
        if self.provider == _CUDA:
            return self._run_iobinding(feed)
        values = self.session.run(self.outputs, feed)
        return dict(zip(self.outputs, values))

    def _run_iobinding(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Inputs are copied to the GPU once, outputs stay there until one copy back.
        binding = self.session.io_binding()
        for name, array in feed.items():
            value = self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", 0)
            binding.bind_ortvalue_input(name, value)
        for name in self.outputs:
            binding.bind_output(name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.outputs, binding.copy_outputs_to_cpu()))
