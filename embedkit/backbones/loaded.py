"""A loaded backbone: a torch model plus everything export needs to trace and verify it.

:class:`HookedBackbone` serves image models and any plain ``nn.Module`` (taps read
named modules with forward hooks); text encoders live in
:mod:`embedkit.backbones.text`. Both build a :class:`Traceable`: the module that
returns every tap, its example inputs, and fresh inputs of another batch size for
verification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from embedkit.backbones.taps import (
    HookedGraph,
    TapInfo,
    TapPoint,
    check_pooling,
    discover,
    first_tensor,
    nominal_stride,
)
from embedkit.errors import UserInputError


@dataclass
class Traceable:
    """A module ready for ``torch.onnx.export`` and the facts written next to it."""

    module: nn.Module
    input_names: list[str]
    example: tuple  # tensors traced by the exporter
    fresh: tuple  # other batch (and sequence) sizes, real data where we have it
    dynamic_axes: dict[str, dict[int, str]]
    taps: list[dict]  # {"name", "output", "pooling", "stride", "layer"}; shape added later
    preprocess: dict
    fresh_source: str  # what the fresh inputs are, for the verify report
    transformer: tuple[int, int] | None = None  # (num_heads, hidden_size) for fusion
    tokenizer_json: str | None = None
    options: dict = field(default_factory=dict)  # recorded in embedkit.export
    verify_set: list[tuple] = field(default_factory=list)  # batches for the drift percentiles
    verify_set_source: str = ""  # what the verification set is, for the verify report


def output_name(tap: str) -> str:
    """ONNX output name for a tap: ``blocks.10`` → ``blocks_10`` (never ``embedding``).

    Examples
    --------
    >>> output_name("blocks.10"), output_name("0"), output_name("embedding")
    ('blocks_10', 'tap_0', 'tap_embedding')
    """
    name = "".join(c if c.isalnum() else "_" for c in tap).strip("_") or "output"
    if name in ("embedding", "input") or not name[0].isalpha():  # "0" clashes with TorchScript
        return "tap_" + name
    return name


class HookedBackbone:
    """An image model (or any module taking one tensor) whose taps are named modules.

    Parameters
    ----------
    name : str
        Backbone name written to metadata.
    model : nn.Module
        The model; it is put in eval mode.
    example : torch.Tensor
        One input batch used for tracing and for ``embedkit taps``.
    preprocess : dict
        The preprocessing spec (see docs/architecture.md).
    aliases : dict of str to TapPoint, optional
        Friendly tap names (``"pool"``, ``"blocks.10"``) listed by ``embedkit taps``.
    default_tap : str
        Tap exported when none is asked for.
    """

    modality = "image"

    def __init__(self, name, model, example, preprocess, *, aliases=None, default_tap="output"):
        self.name = name
        self.model = model.eval()
        self.example = example
        self.preprocess = dict(preprocess)
        self.aliases = dict(aliases or {})
        self.default_tap = default_tap
        self.default_pooling = "avg"
        self.default_normalize = False
        self._table: dict[str, TapInfo] | None = None
        self._inputs: dict[str, TapInfo] | None = None

    def modules_table(self) -> dict[str, TapInfo]:
        """Every named module's output shape, from one real forward pass (cached)."""
        if self._table is None:
            self._table = {t.name: t for t in discover(self.model, self.example[:1])}
        return self._table

    def tap_table(self, all_modules: bool = False) -> list[TapInfo]:
        """The tappable layers: the friendly aliases, or every named module."""
        table = self.modules_table()
        if all_modules or not self.aliases:
            rows = list(table.values())
            with torch.no_grad():
                out = first_tensor(self.model(self.example[:1]))
            if out is not None:
                height = self.example.shape[2] if self.example.dim() == 4 else None
                rows.append(
                    TapInfo("output", "", tuple(out.shape[1:]), nominal_stride(height, out))
                )
            return rows
        return [self._alias_info(name, point) for name, point in self.aliases.items()]

    def _alias_info(self, name: str, point: TapPoint) -> TapInfo:
        row = self.modules_table()[point.module]
        if point.side == "input":
            if self._inputs is None:
                rows = discover(self.model, self.example[:1], side="input")
                self._inputs = {t.name: t for t in rows}
            row = self._inputs[point.module]
        shape = row.shape
        if point.pooled is not None:
            shape = (int(np.prod(shape)),)
        return TapInfo(name, point.module, shape, row.stride)

    def resolve(self, tap: str) -> TapPoint:
        """Map a tap name (alias, module path or ``output``) to a :class:`TapPoint`."""
        if tap in self.aliases:
            return self.aliases[tap]
        if tap == "output":
            return TapPoint("")
        if tap in self.modules_table():
            return TapPoint(tap)
        valid = list(self.aliases) or list(self.modules_table()) + ["output"]
        raise UserInputError(
            f"Unknown tap {tap!r} for {self.name}; valid: {', '.join(valid)} "
            f"(every module: embedkit taps {self.name} --all)"
        )

    def traceable(self, taps, *, pooling=None, normalize=None, fold_normalize=False, **_):
        """Build the multi-output module that ``torch.onnx.export`` will trace."""
        pooling = check_pooling(pooling or self.default_pooling)
        normalize = self.default_normalize if normalize is None else normalize
        taps = list(taps or [self.default_tap])
        points = [(self.resolve(t), pooling) for t in taps]
        preprocess = dict(self.preprocess)
        mean = std = None
        if fold_normalize:
            if preprocess.get("kind") != "image":
                raise UserInputError("--fold-normalize needs an image backbone (mean/std)")
            channels = 3 if preprocess.get("color", "RGB") == "RGB" else 1
            mean = _per_channel(preprocess["mean"], channels)
            std = _per_channel(preprocess["std"], channels)
            preprocess.update(mean=[0.0] * channels, std=[1.0] * channels)
        module = HookedGraph(self.model, points, normalize=normalize, mean=mean, std=std).eval()
        fresh, source = self._fresh(fold_normalize)
        descs = []
        for tap, (point, how) in zip(taps, points, strict=True):
            if tap in self.aliases:
                info = self._alias_info(tap, point)
            elif point.module:
                info = self.modules_table()[point.module]
            else:  # the model's own output
                info = next(r for r in self.tap_table(all_modules=True) if r.name == "output")
            spatial = len(info.shape) == 3 and point.pooled is None
            descs.append(
                {
                    "name": tap,
                    "output": output_name(tap),
                    "pooling": point.pooled or (how if spatial or len(info.shape) == 2 else "none"),
                    "stride": info.stride,
                    "layer": point.module,
                }
            )
        name = preprocess.get("input", "x")
        return Traceable(
            module=module,
            input_names=[name],
            example=(self._raw(self.example, fold_normalize),),
            fresh=(fresh,),
            dynamic_axes={name: {0: "batch"}, **{d["output"]: {0: "batch"} for d in descs}},
            taps=descs,
            preprocess=preprocess,
            fresh_source=source,
            options={"pooling": pooling, "normalize": normalize, "fold_normalize": fold_normalize},
        )

    def _raw(self, x: torch.Tensor, fold: bool) -> torch.Tensor:
        if not fold:
            return x
        mean = torch.tensor(_per_channel(self.preprocess["mean"], x.shape[1])).view(1, -1, 1, 1)
        std = torch.tensor(_per_channel(self.preprocess["std"], x.shape[1])).view(1, -1, 1, 1)
        return x * std + mean

    def _fresh(self, fold: bool) -> tuple[torch.Tensor, str]:
        """Inputs with another batch size: real photos for image specs, else noise."""
        n = self.example.shape[0] + 1
        spec = self.preprocess
        if spec.get("kind") == "image" and spec.get("layout", "NCHW") == "NCHW":
            pixels, source = sample_images(n, tuple(spec["size"]))  # (N, H, W, 3) uint8
            if spec.get("color") == "L":
                pixels = pixels.mean(axis=3, keepdims=True)
            x = torch.from_numpy(pixels.astype(np.float32)).permute(0, 3, 1, 2)  # (N, C, H, W)
            if not fold:
                c = x.shape[1]
                mean = torch.tensor(_per_channel(spec["mean"], c)).view(1, -1, 1, 1)
                std = torch.tensor(_per_channel(spec["std"], c)).view(1, -1, 1, 1)
                x = (x - mean) / std
            return x.contiguous(), source
        g = torch.Generator().manual_seed(1)
        ex = self.example
        if ex.is_floating_point():
            noise = torch.randn((n, *ex.shape[1:]), generator=g)
            return (noise * ex.std() + ex.mean()).to(ex.dtype), "random normal (example stats)"
        high = int(ex.max()) + 1
        return torch.randint(0, high, (n, *ex.shape[1:]), generator=g).to(ex.dtype), "random ints"


def _per_channel(value, channels: int) -> list[float]:
    values = [float(v) for v in (value if isinstance(value, list | tuple) else [value])]
    return values * channels if len(values) == 1 else values


def sample_images(n: int, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """``n`` real RGB photos resized to ``size`` with PIL bilinear: (n, H, W, 3) uint8.

    Uses scikit-image's bundled sample photos when scikit-image is installed, else
    smooth synthetic images (gradients and discs) so that export never needs it.

    Examples
    --------
    >>> x, source = sample_images(2, (32, 32))
    >>> x.shape, x.dtype
    ((2, 32, 32, 3), dtype('uint8'))
    """
    from PIL import Image

    try:
        from skimage import data

        photos = [data.coffee(), data.chelsea(), data.rocket(), data.astronaut()]
        source = "scikit-image sample photos"
    except ImportError:
        yy, xx = np.mgrid[0:256, 0:256]
        photos = [
            np.stack([xx, yy, 255 - xx], -1),
            np.stack([((xx - 128) ** 2 + (yy - 100) ** 2 < 4000) * 200 + 30, yy, xx], -1),
        ]
        source = "synthetic gradient images"
    out = []
    for i in range(n):
        photo = Image.fromarray(np.asarray(photos[i % len(photos)], dtype=np.uint8))
        if i >= len(photos):  # more than we have: mirror to keep items distinct
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(np.asarray(photo.resize((size[1], size[0]), Image.BILINEAR)))
    return np.stack(out), source
