"""ONNX Runtime sessions: pick the execution provider, tune the session, run batches.

CUDA is used when onnxruntime-gpu offers it (``--device auto``); ``--device cuda``
without it is an error, never a silent fallback. On CUDA, batches go through IO
binding; on the CPU, a plain ``session.run`` with graph optimisations on and one
intra-op thread per core (or a set count: Ray's CPU actors run one thread each). Idle
intra-op threads spin only while no other process wants the CPU (:func:`others_running`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from embedkit import contract as C
from embedkit.errors import UserInputError, first_line, require

DEVICES = ("auto", "cpu", "cuda")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


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


def others_running(looks: int = 3) -> int | None:
    """Threads of other processes running or waiting for a CPU now (Linux), else None.

    The fewest seen in ``looks`` looks 10 ms apart at ``/proc/loadavg`` (all running
    threads), less this process's own running threads: a short command is not counted,
    a busy job is.

    Examples
    --------
    >>> others_running() is None or others_running() >= 0
    True
    """
    seen = []
    for look in range(looks):
        if look:
            time.sleep(0.01)
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
            tasks = os.listdir("/proc/self/task")
        except (OSError, ValueError, IndexError):  # not Linux
            return None
        seen.append(running - sum(_running(tid) for tid in tasks))
    return max(0, min(seen))


def _running(tid: str) -> bool:
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError):  # the thread ended meanwhile
        return False


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
        # Spinning threads pick up the next operator at once (Lite0 1.13x, 2 idle cores), but
        # steal the cores from other jobs' threads (0.92x beside 2 busy processes; 0.74x at
        # load 12): they spin only when no other process is running (speed.md, "Session 3").
        self.spinning = others_running() == 0
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.spinning else "0"
        )
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=self.providers, **C.session_kwargs(self.providers)
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = first_line(exc)
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
        return dict(zip(self.outputs, self.session.run(self.outputs, feed)))

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
