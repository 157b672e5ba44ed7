"""Read, preprocess and run batches of one source: the unit of work of every engine.

The local engine calls a :class:`BatchWorker` from its thread pool; the Ray engine pickles
one into each actor, which then builds its own preprocessor and ONNX Runtime session.

    work = BatchWorker(model, source, device="cpu", dtype="float32", threads=1)
    prepared = work.prepare(rows)                 # rows: positions in the source
    good, bad, features = work.compute(prepared, expected_shapes(fingerprint), skip_bad=True)
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from embedkit.errors import UserInputError
from embedkit.extract.batching import Plan
from embedkit.extract.model import ModelSpec
from embedkit.extract.preprocess import BadItem, make_preprocessor
from embedkit.extract.providers import Runner
from embedkit.extract.sources import Source


class BatchWorker:
    """Read, preprocess and run batches of one source (unpickled: its own session)."""

    def __init__(self, model: ModelSpec, source: Source, *, device: str, dtype: str, threads=None):
        self.model, self.source = model, source
        self.device, self.dtype, self.threads = device, dtype, threads  # threads: ORT intra-op
        self.pre = make_preprocessor(model, source.kind, str(source.path))
        self.plan: Plan | None = None  # set once planned; text feeds come from its tokens
        self._runner: Runner | None = None
        self._starting: Future | None = None  # the session start_session builds

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("pre", "_runner", "_starting")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _runner=None, _starting=None)
        self.pre = make_preprocessor(self.model, self.source.kind, str(self.source.path))

    @property
    def runner(self) -> Runner:
        if self._runner is None:  # created only when something needs computing
            self._runner = self._starting.result() if self._starting else self._new_runner()
        return self._runner

    def start_session(self) -> None:
        """Build the session in a background thread; :attr:`runner` waits for it.

        ONNX Runtime releases the GIL while it loads and optimises the graph, so the
        caller tokenises, plans and opens the journal meanwhile. A load error is raised
        by :attr:`runner`; call :meth:`settle` before returning.
        """
        if self._runner is not None or self._starting is not None:
            return
        future: Future = Future()

        def build() -> None:
            try:
                future.set_result(self._new_runner())
            except BaseException as exc:  # handed to whoever asks for the runner
                future.set_exception(exc)

        self._starting = future
        threading.Thread(target=build, name="embedkit-session", daemon=True).start()

    def settle(self) -> None:
        """Wait for a session start_session began (a thread must not outlive the call)."""
        if self._starting is not None:
            self._starting.exception()

    def _new_runner(self) -> Runner:
        outputs = list(dict.fromkeys(t.output for t in self.model.taps))
        return Runner(self.model.path, outputs, device=self.device, threads=self.threads)

    @property
    def provider(self) -> str | None:
        """The execution provider of the session, None while none was created."""
        return self._runner.provider if self._runner is not None else None

    def prepare(self, rows: np.ndarray):
        """Read and preprocess one batch: (good rows, [(row, reason)], feed or None)."""
        good, prepared, bad = [], [], []
        for index in rows.tolist():
            try:
                prepared.append(self.pre.prepare(self.source.read(index)))
                good.append(index)
            except BadItem as exc:
                bad.append((index, str(exc)))
            except OSError as exc:
                bad.append((index, f"cannot read ({exc.strerror or exc})"))
        if not prepared:
            return good, bad, None
        if self.plan is not None and self.plan.tokens is not None:  # text: tokenised once
            return good, bad, self.plan.feed(good, self.pre)
        return good, bad, self.pre.collate(prepared)

    def compute(self, prepared, expected: dict[str, tuple], *, skip_bad: bool):
        """Run and screen a prepared batch (``prepare``'s result): ``(good rows, [(row,
        reason)], features or None)``. Without ``skip_bad`` the first bad item raises."""
        good, bad, feed = prepared
        features = None
        if feed is not None and (skip_bad or not bad):
            features = self.infer(feed, expected, len(good))
            good, features, nonfinite = self.screen(good, features)
            bad = bad + nonfinite  # the order both engines record them in
        if bad and not skip_bad:
            index, reason = bad[0]
            raise UserInputError(
                f"{self.source.describe(index)}: {reason}; fix or remove it, or pass --skip-bad"
            )
        return good, bad, features

    def infer(self, feed, expected: dict[str, tuple], n: int) -> dict[str, np.ndarray]:
        """Run one batch; ``{tap: (n, *shape)}`` in the storage dtype."""
        outputs = self.runner.run(feed)
        features = {}
        for tap in self.model.taps:
            x = outputs[tap.output]  # (n, *shape)
            if x.shape != (n, *expected[tap.name]):
                raise UserInputError(
                    f"{self.model.path}: output {tap.output!r} gave shape {x.shape[1:]} per "
                    f"item, expected {expected[tap.name]}; export a pooled output for tap "
                    f"{tap.name!r} or pick others with --tap"
                )
            with np.errstate(over="ignore"):  # overflow to float16 is caught as non-finite
                features[tap.name] = x.astype(self.dtype, copy=False)
        return features

    def screen(self, good: list[int], features: dict[str, np.ndarray]):
        """Drop rows with NaN or infinite features: (good, features, [(row, reason)]).

        A batch is screened before it is journaled, so such a row is never committed.
        """
        nonfinite = nonfinite_rows(features, self.dtype)
        if not nonfinite:
            return good, features, []
        if len(nonfinite) == len(good) > 1:  # every item: the model is at fault, not an item
            raise UserInputError(
                f"{self.model.path}: {next(iter(nonfinite.values()))} for every item of a "
                f"batch ({len(good)} items); check the model and its preprocessing"
            )
        keep = [r for r in range(len(good)) if r not in nonfinite]
        rejected = [(good[r], why) for r, why in nonfinite.items()]
        return [good[r] for r in keep], {t: x[keep] for t, x in features.items()}, rejected


def expected_shapes(fingerprint) -> dict[str, tuple]:
    """Per-item shape of each tap the store expects."""
    return {t.name: tuple(t.shape) for t in fingerprint.tap_infos}


def nonfinite_rows(features: dict[str, np.ndarray], dtype: str) -> dict[int, str]:
    """Rows of a batch (positions) whose features hold NaN or infinity, with the reason.

    ``features`` are the ``{tap: (n, ...)}`` arrays as they will be stored (``dtype``).

    Examples
    --------
    >>> x = np.array([[0.0, 1.0], [np.nan, 2.0]], np.float32)
    >>> nonfinite_rows({"pool": x}, "float32")
    {1: "the model's output for tap 'pool' holds NaN or infinite values"}
    """
    bad: dict[int, str] = {}
    for tap, x in features.items():
        flat = x.reshape(len(x), -1)  # (n, features)
        for row in np.flatnonzero(~np.isfinite(flat).all(axis=1)).tolist():
            reason = f"the model's output for tap {tap!r} holds NaN or infinite values"
            if dtype == "float16":
                reason += " (float16 storage overflows beyond 65504: try --dtype float32)"
            bad.setdefault(row, reason)
    return dict(sorted(bad.items()))
