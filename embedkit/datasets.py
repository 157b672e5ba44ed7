"""Readers for the offline datasets that ``scripts/fetch_data.sh`` unpacks into ``data/``.

Nothing here downloads: the files come from Debian packages (``dataset-fashion-mnist``
and ``fortunes``). ``make demo`` and the benchmarks call the fetch script first.

Examples
--------
>>> from embedkit.datasets import read_idx
>>> import gzip, io, numpy as np, tempfile, os
>>> raw = bytes([0, 0, 8, 1, 0, 0, 0, 3]) + bytes([7, 8, 9])
>>> path = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte.gz")
>>> with gzip.open(path, "wb") as f:
...     _ = f.write(raw)
>>> read_idx(path).tolist()
[7, 8, 9]
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from embedkit.errors import UserInputError

FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip

# Ten topical fortune files (the package's others include offensive jokes).
FORTUNE_TOPICS = (
    "computers", "science", "politics", "food", "sports",
    "love", "medicine", "law", "education", "startrek",
)  # fmt: skip

_FETCH_HINT = "run `bash scripts/fetch_data.sh` (or `make data`) first"


def read_idx(path: str | Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file; {_FETCH_HINT}")
    data = gzip.open(path).read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(
    root: str | Path = "data/fashion-mnist", split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)``.

    ``split`` is ``"train"`` (60,000 images) or ``"test"`` (10,000).
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise UserInputError(f"split={split!r} is not valid; use 'train' or 'test'")
    root = Path(root)
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def load_fortunes(
    root: str | Path = "data/fortunes", topics: tuple[str, ...] = FORTUNE_TOPICS
) -> tuple[list[str], list[str]]:
    """Return ``(texts, topics)``: one entry per fortune, labelled by its file name.

    Entries are separated by lines holding a single ``%``; empty entries are dropped.
    """
    root = Path(root)
    texts, labels = [], []  # one entry per fortune
    for topic in topics:
        path = root / topic
        if not path.exists():
            raise UserInputError(f"{path}: no such fortunes file; {_FETCH_HINT}")
        raw = path.read_text(encoding="utf-8", errors="replace").split("\n%\n")
        entries = [text for e in raw if (text := " ".join(e.replace("%", " ").split()))]
        texts += entries
        labels += [topic] * len(entries)
    return texts, labels
