"""Turn raw items (images, text, array rows) into feeds, as a preprocessing spec says.

The specs are :mod:`embedkit.contract`'s ``ImageSpec``, ``TextSpec`` and ``ArraySpec``:
the ONNX metadata ``embedkit.preprocess`` (or a sidecar ``MODEL.onnx.json``, or
``--preprocess FILE.json``); ``kind`` selects the source type it accepts. A preprocessor
works in two steps so that a bad item is caught on its own: ``prepare(raw)`` decodes one
item (and raises :class:`BadItem`), ``collate(items)`` stacks a batch into the
``{input name: array}`` feed that ``session.run`` takes.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embedkit.contract import ArraySpec, ImageSpec, TextSpec
from embedkit.errors import UserInputError, require

if TYPE_CHECKING:
    from embedkit.extract.model import ModelSpec


class BadItem(Exception):
    """One item cannot be preprocessed; the message says why (no item name: the caller adds it)."""


class Preprocessor(Protocol):
    """Turns raw items of one source kind into the model's feed dict."""

    def prepare(self, raw: Any) -> Any:
        """Decode one raw item; raise :class:`BadItem` when it cannot be used."""

    def collate(self, items: list[Any]) -> dict[str, np.ndarray]:
        """Stack prepared items into ``{graph input name: (n, ...) array}``."""


def make_preprocessor(model: ModelSpec, source_kind: str, source_name: str) -> Preprocessor:
    """Build the preprocessor for ``model`` fed from a source of ``source_kind``.

    ``source_kind`` is ``"image"`` (file bytes), ``"text"`` (str) or ``"array"`` (rows);
    a plain ONNX file without a spec accepts arrays, fed to its only input.
    """
    spec = model.preprocess
    if spec is None:
        if source_kind != "array" or len(model.inputs) != 1:
            raise UserInputError(
                f"{model.path}: no preprocessing spec for {source_kind} input; pass "
                f"--preprocess FILE.json or put one in {model.path.name}.json "
                '(e.g. {"kind": "image", "size": [224, 224], ...})'
            )
        spec = ArraySpec(input=model.inputs[0].name, dtype=model.inputs[0].dtype)
    accepts = {"image": ("image", "array"), "text": ("text",), "array": ("array",)}[spec.kind]
    if source_kind not in accepts:
        raise UserInputError(
            f"{source_name}: a {source_kind} source cannot feed {model.path.name}, whose "
            f"preprocessing is {spec.kind!r} (it takes: {', '.join(accepts)} sources)"
        )
    fed = getattr(spec, "dtype", None)  # image and array specs name the dtype they feed
    if fed is not None and not isinstance(spec, TextSpec):
        graph = next((t.dtype for t in model.inputs if t.name == spec.input), None)
        if graph is not None and np.dtype(fed) != np.dtype(graph):
            raise UserInputError(
                f"{model.path}: the preprocessing feeds input {spec.input!r} as {fed}, but the "
                f'graph takes {graph}; set "dtype": "{graph}" in the spec'
            )
    return _BY_KIND[spec.kind](spec, model)


def check_item_shape(model: ModelSpec, name: str, given: tuple[int, ...], source: str) -> None:
    """Raise a one-line error when ``given`` (per item) does not fit input ``name``."""
    expected = model.input(name).shape[1:]
    fits = len(expected) == len(given) and all(e is None or e == g for e, g in zip(expected, given))
    if not fits:
        shown = tuple("?" if e is None else e for e in expected)
        raise UserInputError(
            f"{source}: items have shape {given} but {model.path.name} input {name!r} "
            f"expects {shown} per item; reshape the data or use another model"
        )


# How a decoded image becomes upright 8-bit L or RGB pixels (docs/extract.md, "Images").
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageValueError(ValueError):
    """An image whose pixels cannot be used (NaN or infinite samples)."""


def to_eight_bit(image):
    """Return ``image`` upright, as an 8-bit ``"L"`` or ``"RGB"`` PIL image.

    Examples
    --------
    >>> from PIL import Image
    >>> deep = Image.fromarray(np.array([[0, 257, 65535]], np.uint16))
    >>> deep.mode, np.asarray(to_eight_bit(deep)).tolist()
    ('I;16', [[0, 1, 255]])
    >>> clear = Image.new("RGBA", (1, 1), (0, 0, 0, 0))
    >>> to_eight_bit(clear).getpixel((0, 0))
    (255, 255, 255)
    """
    from PIL import Image, ImageOps

    ImageOps.exif_transpose(image, in_place=True)  # loads the pixels
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        pixels = np.asarray(image, dtype=np.float64)  # (H, W)
        return Image.fromarray(np.rint(np.clip(pixels, 0, 65535) / 257).astype(np.uint8))
    if mode == "F":
        pixels = np.asarray(image, dtype=np.float64)  # (H, W)
        if not np.isfinite(pixels).all():
            raise ImageValueError("the image holds NaN or infinite pixel values")
        return Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8))
    if mode in _ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, rgba).convert("RGB")
        return flat.convert("L") if mode in ("LA", "La") else flat
    return image if mode in ("L", "RGB") else image.convert("RGB")


class ImagePreprocessor:
    """Decode (PIL), convert colour, resize (+ center crop), normalise and lay out."""

    def __init__(self, spec: ImageSpec, model: ModelSpec):
        from PIL import Image

        # An image over PIL's pixel limit is a bad item, not a warning on stderr.
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        self.spec = spec
        self._pil = Image
        self._resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[spec.interpolation]
        channels = 3 if spec.color == "RGB" else 1
        height, width = spec.size
        item = (channels, height, width) if spec.layout == "NCHW" else (height, width, channels)
        self._item = item  # (C, H, W) or (H, W, C)
        check_item_shape(model, spec.input, item, f"{model.path.name} preprocessing")
        shape = (1, channels, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, channels)
        self._mean = np.resize(np.asarray(spec.mean, np.float32), channels).reshape(shape)
        self._inv_std = (1.0 / np.resize(np.asarray(spec.std, np.float32), channels)).reshape(shape)

    def prepare(self, raw: bytes | np.ndarray) -> np.ndarray:
        Image = self._pil
        try:
            if isinstance(raw, np.ndarray):
                if raw.dtype != np.uint8 or raw.ndim not in (2, 3):
                    raise BadItem(
                        f"image arrays must be uint8 (H, W) or (H, W, 3), got {raw.dtype} "
                        f"{raw.shape}"
                    )
                image = Image.fromarray(raw)
            else:
                image = Image.open(io.BytesIO(raw))
            image = to_eight_bit(image)  # upright, 8-bit L or RGB
            if image.mode == "L" and self.spec.color == "RGB":
                image = self._resize(image)  # grey stays one channel: collate broadcasts it
            else:
                image = self._resize(image.convert(self.spec.color))
        except BadItem:
            raise
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, ...
            # PIL names the buffer by address ("<_io.BytesIO object at 0x7f..>"): drop it, so
            # every run (and every Ray actor) records the same reason for the same file
            why = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc))
            raise BadItem(f"cannot decode image ({type(exc).__name__}: {why})") from exc
        pixels = np.asarray(image, dtype=np.uint8)  # (H, W) or (H, W, C)
        return pixels[:, :, None] if pixels.ndim == 2 else pixels

    def _resize(self, image):
        height, width = self.spec.size
        if self.spec.resize_shorter is None:
            return image.resize((width, height), self._resample)
        scale = self.spec.resize_shorter / min(image.size)
        new = (max(width, round(image.size[0] * scale)), max(height, round(image.size[1] * scale)))
        left, top = (new[0] - width) // 2, (new[1] - height) // 2
        # Resize only the source region that lands in the centre crop: one pass, the same
        # pixels as resizing to `new` and cropping, without computing the border.
        sx, sy = image.size[0] / new[0], image.size[1] / new[1]
        box = (left * sx, top * sy, (left + width) * sx, (top + height) * sy)
        return image.resize((width, height), self._resample, box=box)

    def collate(self, items: list[np.ndarray]) -> dict[str, np.ndarray]:
        # items: (H, W, 1) grey or (H, W, C); a grey item fills every channel (RGB specs)
        nchw = self.spec.layout == "NCHW"
        shape = (len(items), *self._item)
        if self.spec.dtype == "uint8":
            batch = np.empty(shape, np.uint8)
            for out, item in zip(batch, items):
                out[...] = item.transpose(2, 0, 1) if nchw else item
            return {self.spec.input: batch}
        x = np.empty(shape, np.float32)
        mean, inv_std = self._mean[0], self._inv_std[0]
        for out, item in zip(x, items):  # one pass per item: cast, lay out, centre
            np.subtract(item.transpose(2, 0, 1) if nchw else item, mean, out=out)
        x *= inv_std
        return {self.spec.input: x.astype(self.spec.dtype, copy=False)}


TOKENIZE_BLOCK = 8192  # texts per encode_batch call (memory: a block's Encoding objects)


@dataclass(frozen=True)
class TokenTable:
    """Texts tokenised once, unpadded, in flat arrays: fed batch by batch, padded per batch."""

    ids: np.ndarray  # (total tokens,) int32, all texts one after another
    type_ids: np.ndarray  # (total tokens,) uint8 token type ids
    offsets: np.ndarray  # (n + 1,) int64: text i is ids[offsets[i]:offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per text, ``(n,)``."""
        return np.diff(self.offsets)


class TextPreprocessor:
    """Tokenize with ``tokenizers`` (truncation; batches pad to their longest item)."""

    def __init__(self, spec: TextSpec, model: ModelSpec):
        if not model.tokenizer:
            raise UserInputError(
                f"{model.path}: text preprocessing needs the 'embedkit.tokenizer' metadata; "
                "re-export the model with `embedkit export`"
            )
        tokenizers = require("tokenizers", "text", "text extraction")
        self.spec = spec
        self.tokenizer = tokenizers.Tokenizer.from_str(model.tokenizer)
        self.tokenizer.enable_truncation(max_length=spec.max_length)
        self.pad_id, self.pad_type_id = _pad_ids(self.tokenizer)
        self.tokenizer.no_padding()  # feed() pads each batch to its own longest item
        declared = {t.name for t in model.inputs}
        self.inputs = [name for name in spec.inputs if name in declared]
        missing = declared - set(self.inputs)
        if missing:
            raise UserInputError(
                f"{model.path}: graph input {sorted(missing)[0]!r} is not produced by the text "
                f"preprocessing (it makes: {', '.join(spec.inputs)})"
            )

    def prepare(self, raw: str) -> str:
        if not raw.strip():
            raise BadItem("empty text")
        return raw

    def tokenize(self, texts: list[str]) -> TokenTable:
        """Tokenise ``texts`` with ``encode_batch`` (Rust threads, no padding), a block of
        :data:`TOKENIZE_BLOCK` texts at a time: the tokenizer's per-text ``Encoding`` objects
        (a few KB each) live for one block, only the flat ids stay."""
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        ids, types, lengths = [], [], []
        for lo in range(0, len(texts), TOKENIZE_BLOCK):
            encodings = encode(texts[lo : lo + TOKENIZE_BLOCK])
            n = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
            total = int(n.sum())
            ids.append(np.fromiter((i for e in encodings for i in e.ids), np.int32, total))
            types.append(np.fromiter((t for e in encodings for t in e.type_ids), np.uint8, total))
            lengths.append(n)
        lengths = np.concatenate([np.zeros(1, np.int64), *lengths])  # 0, then one per text
        ids, types = (
            np.concatenate([np.zeros(0, t), *a]) for a, t in ((ids, np.int32), (types, np.uint8))
        )
        return TokenTable(ids, types, np.cumsum(lengths))

    def feed(self, tokens: TokenTable, rows: list[int]) -> dict[str, np.ndarray]:
        """The ``{input: (n, longest) int64}`` feed of texts ``rows`` of ``tokens``."""
        starts = tokens.offsets[rows]
        lengths = tokens.offsets[np.asarray(rows, np.int64) + 1] - starts
        n, longest = len(rows), int(lengths.max()) if len(rows) else 0
        ids = np.full((n, longest), self.pad_id, np.int64)
        types = np.full((n, longest), self.pad_type_id, np.int64)
        mask = np.zeros((n, longest), np.int64)
        for k, (lo, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
            ids[k, :length] = tokens.ids[lo : lo + length]
            types[k, :length] = tokens.type_ids[lo : lo + length]
            mask[k, :length] = 1
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self.inputs}  # each (N, longest)

    def collate(self, items: list[str]) -> dict[str, np.ndarray]:
        return self.feed(self.tokenize(items), list(range(len(items))))


def _pad_ids(tokenizer) -> tuple[int, int]:
    """The tokenizer's own padding ids, else the first known pad token's, else 0 (type 0)."""
    if tokenizer.padding:
        return tokenizer.padding["pad_id"], tokenizer.padding["pad_type_id"]
    found = (tokenizer.token_to_id(t) for t in ("[PAD]", "<pad>", "<|pad|>", "<|endoftext|>"))
    return next((i for i in found if i is not None), 0), 0


class ArrayPreprocessor:
    """Feed array rows as the declared dtype."""

    def __init__(self, spec: ArraySpec, model: ModelSpec):
        self.spec = spec
        self.model = model
        model.input(spec.input)  # raises naming the valid inputs

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            raise BadItem("row holds NaN or infinite values")
        with np.errstate(over="ignore", invalid="ignore"):
            row = raw.astype(self.spec.dtype)
        if row.dtype.kind == "f" and not np.isfinite(row).all():
            raise BadItem(
                f"row holds values beyond the {self.spec.dtype} range (max abs "
                f"{np.abs(raw).max():.3g})"
            )
        return row

    def collate(self, items: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {self.spec.input: np.stack(items).astype(self.spec.dtype, copy=False)}


_BY_KIND = {"image": ImagePreprocessor, "text": TextPreprocessor, "array": ArrayPreprocessor}
