"""One JSON record per run in ``RESULTS_DIR/runs/``, written atomically.

A run is one (tap set, head, shots, seed[, fold]); its file name is its run id, e.g.
``runs/pool__logreg__k16__s3.json`` or ``runs/blocks.14+pool__mlp__all__s0__f2.json``. A
record holds the configuration hash of the bench that made it (store, tap sets and their
digests, protocol, sweep, validation fraction, head parameters), so a re-run into the
same directory skips only runs that were done with the same configuration, and refuses
to mix configurations.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from embedkit.errors import UserInputError
from embedkit.files import write_bytes_atomic

SCHEMA = 2  # 2: records carry their tap set; schema-1 records (one tap) are still read


def run_id(tap: str, head: str, shots: int | str, seed: int, fold: int | None = None) -> str:
    """The file stem of a run.

    Examples
    --------
    >>> run_id("pool", "logreg", 16, 3), run_id("a+b", "mlp", "all", 0, fold=2)
    ('pool__logreg__k16__s3', 'a+b__mlp__all__s0__f2')
    """
    level = "all" if shots == "all" else f"k{int(shots)}"
    tail = "" if fold is None else f"__f{int(fold)}"
    return f"{tap}__{head}__{level}__s{int(seed)}{tail}"


def config_hash(config: dict) -> str:
    """A short stable hash of a JSON-able configuration."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_record(runs_dir: Path, record: dict) -> Path:
    """Write ``record`` to ``runs_dir/<run_id>.json`` via a temporary file and a rename."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    plain = lambda value: value.tolist() if hasattr(value, "tolist") else str(value)  # noqa: E731
    text = json.dumps(record, indent=1, sort_keys=True, default=plain)  # numpy: Python values
    return write_bytes_atomic(runs_dir / f"{record['run_id']}.json", text.encode("utf-8"))


def read_records(runs_dir: Path) -> list[dict]:
    """All records in ``runs_dir`` (temporary files of interrupted writes are ignored)."""
    records = []
    for path in sorted(Path(runs_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserInputError(
                f"{path} is not a readable run record ({exc}); delete it and re-run the bench"
            ) from exc
        if record.get("schema") not in (1, SCHEMA) or "run_id" not in record:
            raise UserInputError(
                f"{path} is not an embedkit bench record (schema {SCHEMA}); move it out of runs/"
            )
        if "tap" not in record:  # schema 1: one tap per bench, named in its source
            record["tap"] = record.get("config", {}).get("source", {}).get("tap", "")
        records.append(record)
    return records


def done_runs(runs_dir: Path, config: dict) -> set[str]:
    """Run ids already done (status ``ok``) with this configuration.

    Raises :class:`UserInputError` naming the first differing field when ``runs_dir``
    holds records of another configuration; failed runs are not done and run again.
    """
    want = config_hash(config)
    done = set()
    for record in read_records(runs_dir) if Path(runs_dir).is_dir() else []:
        if record.get("config_hash") != want:
            field, was, now = _first_difference(record.get("config", {}), config)
            raise UserInputError(
                f"{runs_dir} holds runs of another bench configuration ({field} differs: "
                f"{was!r} vs {now!r}); "
                "use a new --out directory, or delete its runs/ to start over"
            )
        if record.get("status") == "ok":
            done.add(record["run_id"])
    return done


def _first_difference(old: dict, new: dict) -> tuple[str, object, object]:
    """The first dotted key whose values differ, and its two values."""
    old, new = _flat(old), _flat(new)
    differ = lambda k: json.dumps(old.get(k), default=str) != json.dumps(new.get(k), default=str)  # noqa: E731
    key = next((k for k in sorted(old.keys() | new.keys()) if differ(k)), "")
    return key, old.get(key), new.get(key)


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out
