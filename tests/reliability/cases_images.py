"""The battery's image cases: undecodable files, modes and bit depths, EXIF, file names.

Each table is data: (case name, files, arguments, exit code, words the error must name).
Accepted-but-awkward inputs (16-bit PNGs, EXIF, BOMs, line separators, ``--skip-bad``)
expect exit 0 and carry a check on the store they produce.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from embedkit.extract.sources import name_from_id
from embedkit.store import FeatureStore
from tests.reliability.harness import Case

RNG = np.random.default_rng(11)
PIXELS = RNG.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


GOOD_PNG = encode(Image.fromarray(PIXELS))
GOOD_IMAGES = {f"imgs/c/good{i}.png": encode(Image.fromarray(np.roll(PIXELS, i))) for i in (0, 1)}
GOOD_X = RNG.normal(size=(6, 6)).astype(np.float32)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _bomb_png(side: int) -> bytes:
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _store(folder: Path) -> FeatureStore:
    return FeatureStore(folder / "out.h5")


def _rows_by_id(fs: FeatureStore) -> dict[str, np.ndarray]:
    return dict(zip(fs.ids().tolist(), fs.features()))


def _same_features(first: str, second: str, atol: float = 1e-5):
    def check(folder: Path) -> None:
        with _store(folder) as fs:
            rows = _rows_by_id(fs)
            assert np.allclose(rows[first], rows[second], atol=atol), (rows[first], rows[second])

    return check


def _recorded_bad(item_id: str, word: str):
    def check(folder: Path) -> None:
        with _store(folder) as fs:
            bad = {b["id"]: b["reason"] for b in fs.bad_items()}
            assert item_id in bad and word in bad[item_id], bad
            assert item_id not in fs.ids().tolist()
            assert np.isfinite(fs.features()).all()

    return check


# -- images ---------------------------------------------------------------------------------
def _truncated(data: bytes, keep: float) -> bytes:
    return data[: max(1, int(len(data) * keep))]


BAD_IMAGES = {
    "empty.png": b"",
    "noise.jpg": RNG.integers(0, 256, 500, dtype=np.uint8).tobytes(),
    "text.png": b"this is not an image\n",
    "half.png": _truncated(GOOD_PNG, 0.5),
    "header.png": GOOD_PNG[:33],
    "half.jpg": _truncated(encode(Image.fromarray(PIXELS), "JPEG"), 0.4),
    "soi.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "header.gif": b"GIF89a",
    "half.bmp": _truncated(encode(Image.fromarray(PIXELS), "BMP"), 0.3),
    "half.tif": _truncated(encode(Image.fromarray(PIXELS), "TIFF"), 0.3),
    "half.webp": _truncated(encode(Image.fromarray(PIXELS), "WEBP"), 0.5),
    "bomb.png": _bomb_png(10_000),  # over PIL's pixel limit: a warning in PIL
    "hugebomb.png": _bomb_png(20_000),  # twice over: an error in PIL
    "nan.tif": encode(Image.fromarray(np.full((8, 8), np.nan, np.float32), "F"), "TIFF"),
}


def image_cases() -> list[Case]:
    cases = []
    for name, data in BAD_IMAGES.items():
        files = {**GOOD_IMAGES, f"imgs/c/{name}": data}
        argv = ("extract", "{image}", "{d}/imgs", "--out", "{d}/out.h5", "--quiet")
        seeds = {"out.h5": "image"}
        stem = name.replace(".", "_")
        cases.append(Case(f"image_{stem}", argv, 2, (name, "--skip-bad"), files, seeds))
        cases.append(
            Case(
                f"image_{stem}_skip",
                (*argv, "--skip-bad"),
                0,
                files=files,
                seeds=seeds,
                check=_recorded_bad(f"c/{name}", "image"),
            )
        )
    return cases + accepted_image_cases() + file_name_cases()


def _modes() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Images in other modes and the 8-bit RGB pixels they must give."""
    gray = PIXELS[:, :, 0]
    alpha = np.where(np.arange(24) < 12, 255, 0).astype(np.uint8)[None, :].repeat(20, 0)
    over_white = np.where(alpha[:, :, None] == 255, PIXELS, 255).astype(np.uint8)
    palette = Image.fromarray(PIXELS).quantize(16)
    pal_rgb = np.asarray(palette.convert("RGB"))
    pal = palette.copy()
    pal.info["transparency"] = 0
    pal_index = np.asarray(palette)
    pal_expected = np.where((pal_index == 0)[:, :, None], 255, pal_rgb).astype(np.uint8)
    gray3 = np.repeat(gray[:, :, None], 3, 2)
    return {
        "i16": (Image.fromarray(gray.astype(np.uint16) * 257), gray3),
        "i32": (Image.fromarray(gray.astype(np.int32) * 257, "I"), gray3),
        "float": (Image.fromarray(gray.astype(np.float32) / 255, "F"), gray3),
        "rgba": (Image.fromarray(np.dstack([PIXELS, alpha]), "RGBA"), over_white),
        "la": (
            Image.fromarray(np.dstack([gray, alpha]), "LA"),
            np.where(alpha[:, :, None] == 255, gray3, 255).astype(np.uint8),
        ),
        "ptrns": (pal, pal_expected),
        "cmyk": (Image.fromarray(PIXELS).convert("CMYK"), np.asarray(
            Image.fromarray(PIXELS).convert("CMYK").convert("RGB"))),
        "bilevel": (Image.fromarray(gray > 127), np.repeat(((gray > 127) * 255)[:, :, None], 3, 2)),
    }  # fmt: skip


def accepted_image_cases() -> list[Case]:
    """Modes, bit depths, orientation: each must decode as its 8-bit RGB twin does."""
    cases = []
    argv = ("extract", "{image}", "{d}/imgs", "--out", "{d}/out.h5", "--quiet")
    for mode, (image, expected) in _modes().items():
        fmt = "TIFF" if mode in ("float", "i32", "cmyk") else "PNG"
        ext = fmt.lower().replace("tiff", "tif")
        files = {
            f"imgs/c/{mode}.{ext}": encode(image, fmt),
            "imgs/c/twin.png": encode(Image.fromarray(expected.astype(np.uint8))),
        }
        check = _same_features(f"c/{mode}.{ext}", "c/twin.png")
        cases.append(Case(f"image_mode_{mode}", argv, 0, files=files, check=check))
    upright = Image.fromarray(PIXELS)
    for orientation, transpose in ((3, Image.Transpose.ROTATE_180),
                                   (6, Image.Transpose.ROTATE_90),
                                   (8, Image.Transpose.ROTATE_270)):  # fmt: skip
        exif = Image.Exif()
        exif[0x0112] = orientation
        files = {
            f"imgs/c/exif{orientation}.png": encode(upright.transpose(transpose), exif=exif),
            "imgs/c/twin.png": encode(upright),
        }
        check = _same_features(f"c/exif{orientation}.png", "c/twin.png")
        cases.append(Case(f"image_exif_{orientation}", argv, 0, files=files, check=check))
    return cases


def file_name_cases() -> list[Case]:
    """File and folder names that are not UTF-8: stored losslessly, re-runs work."""
    raw_file = b"imgs/c/caf\xe9.png"
    raw_class = b"imgs/\xff\xfe/x.png"

    def check(folder: Path) -> None:
        with _store(folder) as fs:
            ids = fs.ids().tolist()
            names = {name_from_id(i) for i in ids}
            assert b"c/caf\xe9.png" in names and b"\xff\xfe/x.png" in names, ids
            assert "\\xff\\xfe" in fs.label_names, fs.label_names

    files = {os.fsdecode(raw_file): GOOD_PNG, os.fsdecode(raw_class): GOOD_PNG, **GOOD_IMAGES}
    argv = ("extract", "{image}", "{d}/imgs", "--out", "{d}/out.h5", "--quiet")
    return [
        Case("names_not_utf8", argv, 0, files=files, seeds={"out.h5": "image"}, check=check),
        Case(
            "names_not_utf8_folder",
            ("extract", "{image}", os.fsdecode(b"{d}/\xe9imgs"), "--out", "{d}/out.h5", "--quiet"),
            0,
            files={os.fsdecode(b"\xe9" + k.encode()): v for k, v in GOOD_IMAGES.items()},
        ),
    ]
