"""A backbone whose taps are named modules read with forward hooks: image models, any module.

:class:`HookedBackbone` serves image models and any plain ``nn.Module`` that takes one
tensor; text encoders live in :mod:`embedkit.backbones.text`. Both build a
:class:`~embedkit.backbones.to_onnx.Traceable`: the module that returns every tap, its
example inputs, and fresh inputs of another batch size for verification.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from embedkit.backbones.taps import (
    HookedGraph,
    TappableLayer,
    TapPoint,
    check_pooling,
    discover,
    first_tensor,
    nominal_stride,
)
from embedkit.backbones.to_onnx import Traceable
from embedkit.contract import ImageSpec, PreprocessSpec, Tap, parse_preprocess
from embedkit.errors import UserInputError


def output_name(tap: str) -> str:
    """ONNX output name for a tap: ``blocks.10`` → ``blocks_10`` (never ``embedding``).

    Examples
    --------
    >>> output_name("blocks.10"), output_name("0"), output_name("embedding")
    ('blocks_10', 'tap_0', 'tap_embedding')
    """
    name = "".join(c if c.isalnum() else "_" for c in tap).strip("_") or "output"
    clash = name in ("embedding", "input") or not name[0].isalpha()  # "0": TorchScript's
    return "tap_" + name if clash else name


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
    preprocess : PreprocessSpec or dict
        The preprocessing spec (:mod:`embedkit.contract`, or its JSON form).
    aliases : dict of str to TapPoint, optional
        Friendly tap names (``"pool"``, ``"blocks.10"``) listed by ``embedkit taps``.
    default_tap : str
        The backbone's final tap: the one ``embedkit taps`` names as the default.
    default_taps : sequence of str, optional
        Taps exported when none is asked for, shallow to deep (default: ``default_tap``);
        the registry's EfficientNet-Lite exports a multi-depth set (docs/backbones.md).
    """

    modality = "image"

    def __init__(self, name, model, example, preprocess, *, aliases=None, default_tap="output",
                 default_taps=None):  # fmt: skip
        self.name = name
        self.model = model.eval()
        self.example = example
        self.preprocess: PreprocessSpec = parse_preprocess(preprocess, f"{name} preprocess")
        self.aliases = dict(aliases or {})
        self.default_tap = default_tap
        self.default_taps = tuple(default_taps or (default_tap,))
        self.default_pooling = "avg"
        self.default_normalize = False
        self._table: dict[str, TappableLayer] | None = None
        self._inputs: dict[str, TappableLayer] | None = None

    def modules_table(self) -> dict[str, TappableLayer]:
        """Every named module's output shape, from one real forward pass (cached)."""
        if self._table is None:
            self._table = {t.name: t for t in discover(self.model, self.example[:1])}
        return self._table

    def tap_table(self, all_modules: bool = False) -> list[TappableLayer]:
        """The tappable layers: the friendly aliases, or every named module."""
        table = self.modules_table()
        if all_modules or not self.aliases:
            rows = list(table.values())
            with torch.no_grad():
                out = first_tensor(self.model(self.example[:1]))
            if out is not None:
                height = self.example.shape[2] if self.example.dim() == 4 else None
                rows.append(
                    TappableLayer("output", "", tuple(out.shape[1:]), nominal_stride(height, out))
                )
            return rows
        return [self._alias_info(name, point) for name, point in self.aliases.items()]

    def _alias_info(self, name: str, point: TapPoint) -> TappableLayer:
        row = self.modules_table()[point.module]
        if point.side == "input":
            if self._inputs is None:
                rows = discover(self.model, self.example[:1], side="input")
                self._inputs = {t.name: t for t in rows}
            row = self._inputs[point.module]
        shape = row.shape if point.pooled is None else (int(np.prod(row.shape)),)
        return TappableLayer(name, point.module, shape, row.stride)

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
        taps = list(taps or self.default_taps)
        points = [(self.resolve(t), pooling) for t in taps]
        preprocess = self.preprocess
        mean = std = None
        example = self.example  # traced as the graph takes it: raw pixels when folded
        if fold_normalize:
            if not isinstance(preprocess, ImageSpec):
                raise UserInputError("--fold-normalize needs an image backbone (mean/std)")
            channels = 3 if preprocess.color == "RGB" else 1
            mean, std = _mean_std(preprocess, channels)  # (1, C, 1, 1) each
            preprocess = replace(preprocess, mean=(0.0,) * channels, std=(1.0,) * channels)
            example = example * std + mean
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
                Tap(
                    tap,
                    output=output_name(tap),
                    pooling=point.pooled or (how if spatial or len(info.shape) == 2 else "none"),
                    stride=info.stride,
                    layer=point.module or None,
                )
            )
        name = preprocess.input
        return Traceable(
            module=module,
            input_names=[name],
            example=(example,),
            fresh=(fresh,),
            dynamic_axes={name: {0: "batch"}, **{d.output: {0: "batch"} for d in descs}},
            taps=descs,
            preprocess=preprocess,
            fresh_source=source,
            options={"pooling": pooling, "normalize": normalize, "fold_normalize": fold_normalize},
        )

    def _fresh(self, fold: bool) -> tuple[torch.Tensor, str]:
        """Inputs with another batch size: real photos for image specs, else noise."""
        n = self.example.shape[0] + 1
        spec = self.preprocess
        if isinstance(spec, ImageSpec) and spec.layout == "NCHW":
            pixels, source = sample_images(n, tuple(spec.size))  # (N, H, W, 3) uint8
            if spec.color == "L":
                pixels = pixels.mean(axis=3, keepdims=True)
            x = torch.from_numpy(pixels.astype(np.float32)).permute(0, 3, 1, 2)  # (N, C, H, W)
            if not fold:
                mean, std = _mean_std(spec, x.shape[1])
                x = (x - mean) / std
            return x.contiguous(), source
        g = torch.Generator().manual_seed(1)
        ex = self.example
        if ex.is_floating_point():
            noise = torch.randn((n, *ex.shape[1:]), generator=g)
            return (noise * ex.std() + ex.mean()).to(ex.dtype), "random normal (example stats)"
        high = int(ex.max()) + 1
        return torch.randint(0, high, (n, *ex.shape[1:]), generator=g).to(ex.dtype), "random ints"


def _mean_std(spec: ImageSpec, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec's mean and std as (1, C, 1, 1) tensors."""
    mean, std = (per_channel(v, channels) for v in (spec.mean, spec.std))
    return torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)


def per_channel(value, channels: int) -> list[float]:
    """A scalar or one-item mean/std repeated per channel, as floats."""
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
