"""Layer taps: read any named module's output with forward hooks, pool it, return many.

    embedkit taps efficientnet_lite0
    embedkit export efficientnet_lite0 --tap blocks.10 --tap pool --out lite0.onnx

A :class:`HookedGraph` wraps a model so that one forward pass returns every chosen
tap, which is why all taps become outputs of ONE ONNX graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from embedkit.contract import POOLINGS, SPATIAL_POOLINGS, TOKEN_POOLINGS
from embedkit.errors import UserInputError

GEM_P = 3.0  # generalised-mean exponent (Radenović et al.); 1 is avg, ∞ is max


@dataclass(frozen=True)
class TapPoint:
    """Where a tap reads from in a torch model."""

    module: str  # dotted module path (model.get_submodule); "" is the model's own output
    side: str = "output"  # "output": what the module returns; "input": its first argument
    pooled: str | None = None  # the layer's own pooling, recorded instead of the requested one


@dataclass(frozen=True)
class TappableLayer:
    """One row of ``embedkit taps``: a layer that can be tapped, and its unpooled shape."""

    name: str
    layer: str
    shape: tuple[int, ...]  # per item, no batch axis
    stride: int | None  # spatial reduction vs the input, None when not spatial


def first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return first_tensor(value.to_tuple()) if hasattr(value, "to_tuple") else None  # ModelOutput


def pool(x: torch.Tensor, how: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool a tap output: (N, C, H, W) over space, (N, L, D) over tokens.

    Parameters
    ----------
    x : torch.Tensor
        A feature map (N, C, H, W), token states (N, L, D) or vectors (N, D).
    how : str
        One of ``none, avg, max, avgmax, gem`` (maps) or ``none, mean, cls, lasttoken`` (tokens).
    mask : torch.Tensor, optional
        (N, L) attention mask for masked ``mean`` over tokens.

    Examples
    --------
    >>> import torch
    >>> pool(torch.ones(2, 3, 4, 4), "avgmax").shape
    torch.Size([2, 6])
    >>> pool(torch.arange(6.0).view(1, 3, 2), "mean", mask=torch.tensor([[1, 1, 0]]))
    tensor([[1., 2.]])
    """
    if how == "none" or x.dim() == 2:
        return x
    if x.dim() == 4:  # (N, C, H, W) -> (N, C) or (N, 2C)
        if how in _MAP_POOLS:
            return _MAP_POOLS[how](x)
        raise UserInputError(
            f"pooling {how!r} does not apply to a feature map; use one of "
            f"{', '.join(SPATIAL_POOLINGS)}"
        )
    if x.dim() == 3:  # (N, L, D) -> (N, D)
        if how == "cls":
            return x[:, 0]
        if how == "lasttoken":
            return x[:, -1] if mask is None else last_token(x, mask)
        if how in ("mean", "avg"):
            if mask is None:
                return x.mean(dim=1)
            m = mask.unsqueeze(-1).to(x.dtype)  # (N, L, 1)
            return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        raise UserInputError(
            f"pooling {how!r} does not apply to token states; use one of "
            f"{', '.join(TOKEN_POOLINGS)}"
        )
    raise UserInputError(f"cannot pool a tap of rank {x.dim()}; use --pool none")


_MAP_POOLS = {  # (N, C, H, W) -> (N, C), or (N, 2C) for avgmax
    "avg": lambda x: x.mean(dim=(2, 3)),
    "max": lambda x: x.amax(dim=(2, 3)),
    "avgmax": lambda x: torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1),
    "gem": lambda x: x.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P),
}


def last_token(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each item's last real token, with left or right padding: (N, L, D) → (N, D).

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(6.0).view(1, 3, 2)
    >>> last_token(x, torch.tensor([[1, 1, 0]]))
    tensor([[2., 3.]])
    """
    positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, L)
    index = (mask.to(positions.dtype) * positions).argmax(dim=1)  # (N,) last masked-in position
    return x[torch.arange(x.shape[0], device=x.device), index]


def check_pooling(how: str) -> str:
    """Return ``how`` if it is a known pooling, else raise listing the valid ones."""
    if how not in POOLINGS:
        raise UserInputError(f"Unknown pooling {how!r}; valid: {', '.join(POOLINGS)}")
    return how


class HookedGraph(nn.Module):
    """A model wrapper whose forward returns the chosen taps, pooled, in order.

    Parameters
    ----------
    model : nn.Module
        The backbone, in eval mode.
    points : list of (TapPoint, str)
        Each tap's location and the pooling to apply to it.
    normalize : bool
        L2-normalise each pooled vector.
    mean, std : sequence of float, optional
        Fold ``(x - mean) / std`` into the graph (per channel, on NCHW input).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    >>> g = HookedGraph(net, [(TapPoint("0"), "avg"), (TapPoint(""), "none")]).eval()
    >>> [t.shape for t in g(torch.zeros(2, 3, 8, 8))]
    [torch.Size([2, 4]), torch.Size([2, 4, 6, 6])]
    """

    def __init__(self, model, points, *, normalize=False, mean=None, std=None):
        super().__init__()
        self.model = model
        self.points = list(points)
        self.normalize = normalize
        self._seen: dict[int, torch.Tensor] = {}
        self._handles: list = []
        if mean is not None:
            self.register_buffer("mean", torch.as_tensor(mean).float().view(1, -1, 1, 1))
            self.register_buffer("std", torch.as_tensor(std).float().view(1, -1, 1, 1))
        else:
            self.mean = self.std = None
        for index, (point, _) in enumerate(self.points):
            if point.module:
                self._hook(index, point)

    def _hook(self, index: int, point: TapPoint) -> None:
        def keep(_module, *seen, i=index):  # a pre-hook gets (args,), a hook (args, output)
            self._seen[i] = first_tensor(seen[-1])

        side = "pre_hook" if point.side == "input" else "hook"
        module = self.model.get_submodule(point.module)
        self._handles.append(getattr(module, f"register_forward_{side}")(keep))

    def remove_hooks(self) -> None:
        """Detach the tap hooks from the wrapped model (after export)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def forward(self, x):
        self._seen.clear()
        if self.mean is not None:
            x = (x - self.mean) / self.std  # raw 0..255 pixels in, normalised inside
        out = self.model(x)
        results = []
        for index, (point, how) in enumerate(self.points):
            t = first_tensor(out) if not point.module else self._seen.get(index)
            if t is None:
                raise UserInputError(
                    f"tap layer {point.module!r} did not run in forward; "
                    "pick another tap from `embedkit taps`"
                )
            if point.pooled is not None or t.dim() == 4 and t.shape[2:] == (1, 1):
                t = t.flatten(1)  # an already pooled (N, C, 1, 1) map
            t = pool(t, how)
            if self.normalize and t.dim() == 2:
                t = nn.functional.normalize(t, dim=1)
            results.append(t)
        return tuple(results)


def discover(model: nn.Module, example: torch.Tensor, side: str = "output") -> list[TappableLayer]:
    """Run one real forward pass with hooks on every named module and record shapes.

    Parameters
    ----------
    model : nn.Module
        The model, in eval mode.
    example : torch.Tensor
        One input batch, e.g. (1, 3, 224, 224).
    side : str
        ``"output"`` records what each module returns, ``"input"`` its first argument.

    Returns
    -------
    list of TappableLayer
        One row per module that returned a tensor, in execution order; a module
        called several times reports its last call.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU())
    >>> [(t.name, t.shape, t.stride) for t in discover(net, torch.zeros(1, 3, 8, 8))]
    [('0', (4, 4, 4), 2), ('1', (4, 4, 4), 2)]
    """
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m, args, out, name=name):
            t = first_tensor(out if side == "output" else args)
            if t is not None:
                seen.pop(name, None)  # keep execution order of the last call
                seen[name] = t

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    height = example.shape[2] if example.dim() == 4 else None
    return [
        TappableLayer(name=n, layer=n, shape=tuple(t.shape[1:]), stride=nominal_stride(height, t))
        for n, t in seen.items()
    ]


def nominal_stride(height: int | None, t: torch.Tensor) -> int | None:
    """Spatial reduction of a (N, C, H, W) map vs an input ``height``, as a power of two.

    Examples
    --------
    >>> import torch
    >>> nominal_stride(260, torch.zeros(1, 8, 9, 9)), nominal_stride(224, torch.zeros(1, 8))
    (32, None)
    """
    if height is None or t.dim() != 4 or t.shape[2] in (0, 1):
        return None
    return 2 ** max(0, round(math.log2(height / t.shape[2])))  # nominal: 260 px / 9 -> 32
