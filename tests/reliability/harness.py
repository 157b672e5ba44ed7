"""The reliability battery's harness: bad inputs through the real CLI, checked the same way.

A :class:`Case` is a row of a table: the files to write, the ``embedkit`` arguments, the
exit code expected and the words the one stderr line must hold. :func:`run_cases` writes
every case into its own folder (with a copy of a seed store where the case names one),
runs them all in a separate ``python`` process (``embedkit.cli.main`` per case, with file
descriptors 1 and 2 redirected, so C-level and Python-level output, warnings and thread
tracebacks are all caught), then returns one :class:`Outcome` per case. One
:class:`Runner` process serves every area of a test session in turn, so sklearn, skops
and torch are imported once, not once per area. :func:`problems`
lists what went wrong. A case passes when:

- the exit code is the expected one;
- a failing run prints exactly ONE stderr line, naming every word in ``names``, with no
  traceback and no ``internal error``; a passing run prints nothing on stderr;
- every file that existed in the case folder before the run (a store is a file or a folder;
  every file under it is hashed) is byte-identical afterwards when the run failed;
- ``check(folder)`` (for inputs that must be accepted, e.g. with ``--skip-bad``) passes.

Placeholders in ``argv``: ``{d}`` is the case folder and ``{name}`` any entry of the
``assets`` mapping given to :func:`run_cases` (models, ...). Add a table in a new
``cases_*.py`` module and one entry in ``AREAS`` of test_battery.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
Files = dict[str, bytes | str]  # relative path -> content (str is written as UTF-8)


@dataclass(frozen=True)
class Case:
    """One bad (or awkward) input and what the CLI must do with it."""

    name: str  # unique within the battery; also the case folder name
    argv: tuple[str, ...]  # embedkit arguments, with {d} and {asset} placeholders
    code: int  # expected exit code
    names: tuple[str, ...] = ()  # words the stderr line must contain (file, item, field)
    files: Files = field(default_factory=dict)
    seeds: dict[str, str] = field(default_factory=dict)  # path in the folder -> seed name
    check: Callable[[Path], None] | None = None  # extra assertions, given the folder
    setup: Callable[[Path, dict[str, Path]], None] | None = None  # (folder, assets): links, ...


@dataclass
class Outcome:
    case: Case
    folder: Path
    code: int
    stderr: str
    before: dict[str, str]  # relative file path -> sha256, before the run
    after: dict[str, str]


class Runner:
    """A ``python -m tests.reliability.harness --serve`` process: it runs one plan file per
    request (a line on its stdin) and answers with a line when the plan's results are
    written."""

    def __init__(self, log: Path):
        self.log = log  # the server's own stderr (cases' output goes to their results)
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.harness", "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )

    def run(self, plan_file: Path, timeout: float = 600) -> None:
        self.proc.stdin.write(f"{plan_file}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        answer = self.proc.stdout.readline() if ready else ""
        if answer.strip() != "done":
            self.close()
            raise RuntimeError(f"the battery runner failed:\n{self.log.read_text()[-4000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_cases(
    cases: list[Case],
    root: Path,
    assets: dict[str, Path],
    seeds: dict[str, Path],
    runner: Runner | None = None,
) -> list[Outcome]:
    """Write, run (in ``runner``, or a fresh subprocess) and snapshot every case; return
    their outcomes."""
    plan, befores = [], []
    for case in cases:
        folder = root / case.name
        folder.mkdir(parents=True)
        for rel, content in case.files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        for rel, seed in case.seeds.items():
            copy = shutil.copytree if seeds[seed].is_dir() else shutil.copyfile
            copy(seeds[seed], folder / rel)
            shards = Path(f"{seeds[seed]}.d")  # a store's index file names its shard folder
            if shards.is_dir():
                shutil.copytree(shards, folder / f"{rel}.d")
        if case.setup is not None:
            case.setup(folder, assets)
        values = {"d": str(folder), **{k: str(v) for k, v in assets.items()}}
        plan.append([a.format(**values) for a in case.argv])
        befores.append(snapshot(folder))
    plan_file = root / "plan.json"
    plan_file.write_text(json.dumps(plan))
    if runner is not None:
        runner.run(plan_file)
    else:
        _run_fresh(plan_file)
    results = json.loads((root / "plan.json.out").read_text())
    return [
        Outcome(case, root / case.name, r["code"], r["stderr"], before, snapshot(root / case.name))
        for case, r, before in zip(cases, results, befores)
    ]


def _run_fresh(plan_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.reliability.harness", str(plan_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"the battery runner failed:\n{result.stderr[-4000:]}")


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (stores may be files or folders)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def problems(outcome: Outcome) -> list[str]:
    """What this outcome got wrong (empty when the case passed)."""
    case, found = outcome.case, []
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if outcome.code != case.code:
        found.append(f"exit {outcome.code}, expected {case.code}")
    if case.code == 0:
        if lines:
            found.append("stderr not empty")
    else:
        if len(lines) != 1:
            found.append(f"{len(lines)} stderr lines, expected 1")
        text = outcome.stderr
        if "Traceback" in text or "internal error" in text:
            found.append("traceback or internal error")
        missing = [n for n in case.names if n not in text]
        if missing:
            found.append(f"stderr does not name {missing}")
        changed = [p for p, h in outcome.before.items() if outcome.after.get(p) != h]
        if changed:
            found.append(f"existing files changed: {changed}")
    if not found and case.check is not None:
        try:
            case.check(outcome.folder)
        except Exception as exc:  # noqa: BLE001 - a failed check is a finding
            found.append(f"check failed: {type(exc).__name__}: {exc}")
    return found


def report(outcomes: list[Outcome]) -> str:
    """One paragraph per failing case (empty when all passed)."""
    parts = []
    for outcome in outcomes:
        found = problems(outcome)
        if found:
            parts.append(
                f"{outcome.case.name}: {'; '.join(found)}\n  argv: {outcome.case.argv}\n"
                f"  stderr: {outcome.stderr.strip()[-1500:]!r}"
            )
    return "\n".join(parts)


def _run_plan(plan_file: str) -> None:
    """Subprocess side: run each argv through ``embedkit.cli.main``, capturing fd 1 and 2."""
    import tempfile
    import traceback
    import warnings

    from embedkit.cli import main

    warnings.simplefilter("always")  # every warning shows, as in a fresh process
    results = []
    for argv in json.loads(Path(plan_file).read_text()):
        with tempfile.TemporaryFile() as err, open(os.devnull, "wb") as out:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse errors
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - an escaped exception is a finding
                traceback.print_exc()
                code = -1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            err.seek(0)
            results.append({"code": code, "stderr": err.read().decode("utf-8", "replace")})
    Path(plan_file + ".out").write_text(json.dumps(results))


def _serve() -> None:
    """Subprocess side of :class:`Runner`: one plan file per stdin line, "done" when run."""
    requests, answer = os.fdopen(os.dup(0)), os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # a case that reads stdin reads nothing
    sys.stdin = open(os.devnull)
    for line in requests:
        _run_plan(line.strip())
        answer.write("done\n")
        answer.flush()


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        _serve()
    else:
        _run_plan(sys.argv[1])
