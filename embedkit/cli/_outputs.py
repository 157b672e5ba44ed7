"""The overwrite guard: which existing paths a command that writes may replace.

Every command that writes a file or folder calls :func:`guard_output` before any work::

    out = guard_output(args.out, HEAD_FOLDER, overwrite=args.overwrite, inputs=[args.store])

It refuses, with one line naming the path and what it is, to replace anything that is not
this command's own earlier output of the same kind (a store's index or folder, a head
folder, an ONNX model it did not write, ...) unless ``--overwrite`` is given, and it never
lets the output be one of the command's inputs (or a file inside an input folder), even
with ``--overwrite``. An empty file or folder may always be replaced. The writes
themselves go through :func:`embedkit.files.atomic_file`. A new writing command adds
:func:`add_overwrite` to its parser and calls :func:`guard_output` with its own
:class:`Output` kind (docs/reliability.md lists what each command does).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from embedkit import contract as C
from embedkit.errors import UserInputError

_HDF5 = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class Output:
    """What a command writes: a file or a folder, and how to recognise its own earlier one."""

    what: str  # "a predictions file", ... (named in the refusal)
    folder: bool  # the output is a folder (train, bench, audit) or a file
    own: Callable[[Path], bool]  # True when an existing path is this command's own output


def add_overwrite(parser) -> None:
    """Add ``--overwrite`` to a writing command's parser."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output this command did not write (never one of its inputs)",
    )


def guard_output(
    path, kind: Output, *, overwrite: bool = False, inputs: Iterable = (), option: str = "--out"
) -> Path:
    """Refuse (one-line :class:`UserInputError`) an output that would destroy data.

    ``overwrite``: ``--overwrite`` was given, so replace what is there unless it is an input;
    ``inputs``: every file or folder the command reads (None skipped; a store's folder
    ``STORE.d`` counts with its index); ``option`` names ``path`` in the message. Returns
    ``path``, whose missing parent folders are created.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "x.csv").write_text("a,b\\n1,2\\n")
    >>> guard_output(d / "x.csv", PREDICTIONS)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    embedkit.errors.UserInputError: --out .../x.csv already exists and is a file that embedkit ...
    >>> guard_output(d / "x.csv", PREDICTIONS, overwrite=True, inputs=[d / "x.csv"])
    Traceback (most recent call last):
    ...
    embedkit.errors.UserInputError: --out .../x.csv is an input of this command; ...
    """
    path = Path(path)
    for item in _expand(inputs):
        if _within(path, item):
            raise UserInputError(
                f"{option} {path} is an input of this command; choose another {option} "
                "(--overwrite never replaces an input)"
            )
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserInputError(
            f"{option} {path}: {blocker} is a file, not a folder; choose another {option}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)  # missing folders are created
    if not path.exists() and not path.is_symlink():
        return path
    if kind.folder and not path.is_dir():
        if not overwrite:
            raise UserInputError(
                f"{option} {path} is {describe(path)}, not a folder; choose another {option} "
                "or pass --overwrite to replace it"
            )
        return path
    if not kind.folder and path.is_dir():
        raise UserInputError(f"{option} {path} is a folder; give a file path")
    if overwrite or _empty(path) or kind.own(path):
        return path
    raise UserInputError(
        f"{option} {path} already exists and is {describe(path)}, not {kind.what}; choose "
        f"another {option} or pass --overwrite to replace it"
    )


def describe(path: Path) -> str:
    """What an existing path is, in a few words (for the refusal)."""
    from embedkit.store import format as F

    if path.is_dir():
        if path.name.endswith(".d") and any((path / p).exists() for p in (F.SHARDS, F.LOCK)):
            return "a feature store's folder"
        if (path / "head.json").is_file():
            return "a head folder"
        return f"a folder with {sum(1 for _ in path.iterdir())} entries"
    if _head(path, 8) == _HDF5:
        store = F.sidecar(path).is_dir()
        return "a feature store (its index file)" if store else "an HDF5 file (a feature store?)"
    if path.suffix == ".onnx":
        return "an ONNX model"
    if path.name == "head.json":
        return "a head's head.json"
    return "a file that embedkit did not write"


# -- what each command recognises as its own earlier output ------------------------------
def _is_predictions(path: Path) -> bool:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(path).names)
        except Exception:  # noqa: BLE001 - not readable Parquet: not ours
            return False
        return {"id", "pred", "confidence"} <= names
    first = _head(path, 4096).split(b"\n", 1)[0].strip()
    if first.startswith(b"id,pred,confidence,label"):
        return True
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and {"id", "pred", "confidence"} <= set(record)


def _onnx_metadata(path: Path) -> dict[str, str]:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not a readable ONNX file: not ours
        return {}
    return {p.key: p.value for p in model.metadata_props}


def _is_exported(path: Path) -> bool:
    meta = _onnx_metadata(path)
    return C.FORMAT in meta and C.HEAD not in meta and C.VERIFY in meta


def _is_head_folder(path: Path) -> bool:
    try:
        config = json.loads((path / "head.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == "embedkit.head"


def _holding(*names: str) -> Callable[[Path], bool]:
    return lambda folder: any((folder / name).exists() for name in names)


def _is_packed_store(path: Path) -> bool:
    from embedkit.store import format as F

    if _head(path, 8) != _HDF5 or F.sidecar(path).exists():
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            key = f"{F.META}/shards"
            shards = f[key].asstr()[...].tolist() if key in f else None
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return shards == [F.SELF]


PREDICTIONS = Output("a predictions file", False, _is_predictions)
DEPLOYED = Output(
    "a model written by embedkit deploy", False, lambda p: C.HEAD in _onnx_metadata(p)
)
EXPORTED = Output("a model written by embedkit export", False, _is_exported)
HEAD_FOLDER = Output("a head folder", True, _is_head_folder)
BENCH_FOLDER = Output("a bench results folder", True, _holding("runs", "results.csv"))
AUDIT_FOLDER = Output("an audit report folder", True, _holding("report.json", "suspects.csv"))
PACKED = Output("a packed store", False, _is_packed_store)


# -- helpers -----------------------------------------------------------------------------
def _expand(inputs: Iterable) -> list[Path]:
    from embedkit.store import format as F

    items = [Path(item) for item in inputs if item is not None and str(item) != ""]
    return items + [F.sidecar(i) for i in items if i.name.endswith(".h5")]  # shards, journal, lock


def _within(path: Path, item: Path) -> bool:
    """Whether ``path`` is ``item``, or exists inside the folder ``item``."""
    try:
        if path.resolve() == item.resolve():
            return True
        inside = item.is_dir() and path.resolve().is_relative_to(item.resolve())
        return path.exists() and item.exists() and (path.samefile(item) or inside)
    except OSError:
        return False


def _empty(path: Path) -> bool:
    try:
        return not any(path.iterdir()) if path.is_dir() else path.stat().st_size == 0
    except OSError:
        return False


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""
