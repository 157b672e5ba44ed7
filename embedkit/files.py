"""Writing files safely: the one temp -> fsync -> rename helper every layer uses.

    with atomic_file("model.onnx") as tmp:   # write to tmp; on success it replaces the path
        onnx.save(model, str(tmp))

A write that fails or is killed leaves the old file (or nothing) at the path, never half a
file; the temporary file ``NAME.tmp-PID`` sits beside the target, so the rename stays on
one file system, and a killed writer's leftover is recognisable (the store's writers
remove their own). The overwrite rules of the CLI (which existing paths a command may
replace) are in ``embedkit/cli/_outputs.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

TEMP = ".tmp-"  # what every temporary name holds: NAME.tmp-PID


def temp_name(path) -> Path:
    """The temporary name :func:`atomic_file` writes ``path`` under (``NAME.tmp-PID``)."""
    path = Path(path)
    return path.with_name(f"{path.name}{TEMP}{os.getpid()}")


@contextlib.contextmanager
def atomic_file(path, *, tmp: Path | None = None, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The
    folder is fsynced after the rename, so the new name survives a power cut.

    Parameters
    ----------
    path : str or Path
        The file to create or replace.
    tmp : Path, optional
        Where to write instead of ``NAME.tmp-PID`` beside ``path`` (same file system).
    exclusive : bool
        Create ``path`` only if it does not exist (a hard link, then the temporary name
        goes): an existing file is never overwritten, and ``FileExistsError`` is raised.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_file(out) as tmp:
    ...     _ = tmp.write_text("new")
    >>> out.read_text(), sorted(p.name for p in out.parent.iterdir())
    ('new', ['a.txt'])
    >>> try:
    ...     with atomic_file(out) as tmp:
    ...         _ = tmp.write_text("half")
    ...         raise OSError("disk full")
    ... except OSError:
    ...     pass
    >>> out.read_text(), sorted(p.name for p in out.parent.iterdir())
    ('new', ['a.txt'])
    """
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else temp_name(path)
    try:
        yield tmp
        publish(tmp, path, exclusive=exclusive)
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp, path, *, exclusive: bool = False) -> Path:
    """The end of :func:`atomic_file`: fsync ``tmp``, rename it to ``path``, fsync the folder.

    For a file written over a longer life than one ``with`` block (a shard filled batch
    by batch, then named); everything else uses :func:`atomic_file`. ``exclusive``: link
    ``tmp`` to ``path`` (``FileExistsError`` if it exists), then unlink ``tmp``.
    """
    fsync_path(tmp)
    if exclusive:
        os.link(tmp, path)
        os.unlink(tmp)
    else:
        os.replace(tmp, path)
    fsync_path(Path(path).parent)
    return Path(path)


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_file`; returns ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def sha256_file(*paths, prefix: bytes = b"") -> str:
    """Hex sha256 of ``prefix`` followed by the bytes of each file of ``paths``, in order."""
    digest = hashlib.sha256(prefix)
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def json_plain(value):
    """``json.dumps``' ``default`` for the JSON files embedkit writes: numpy values as Python
    ones (``tolist``); anything else is refused (``TypeError``)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def fsync_path(path) -> None:
    """fsync a file or a folder (after a rename in it) by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ONNX_EXTERNAL_OVER = 1 << 30  # bytes of weights above which they go to a .onnx.data file


def save_onnx(model, out, *, external: bool = False) -> int:
    """Write the ONNX ``model`` to ``out``; weights go to ``out.onnx.data`` when ``external``
    or over 1 GiB (protobuf stops at 2 GB), the graph naming that file.

    Returns the bytes of the graph and its ``.onnx.data``, when one was written (a stale one
    from an earlier model is removed otherwise).
    """
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar = out.with_name(out.name + ".data")
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    if external or weights > ONNX_EXTERNAL_OVER:
        sidecar.unlink(missing_ok=True)  # onnx appends to an existing file
        with atomic_file(out) as tmp:  # the graph names the sidecar, written first
            onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=sidecar.name, size_threshold=1024)  # fmt: skip
    else:
        with atomic_file(out) as tmp:
            onnx.save(model, str(tmp))
        sidecar.unlink(missing_ok=True)
    return out.stat().st_size + (sidecar.stat().st_size if sidecar.is_file() else 0)
