"""How a decoded image becomes upright 8-bit ``L`` or ``RGB`` pixels: EXIF orientation,
16-bit and float grey scaled, transparency composited over white. The rules are listed in
docs/extract.md, "Images".

    embedkit extract lite0.onnx photos/ --out feats.h5
"""

from __future__ import annotations

import numpy as np

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
