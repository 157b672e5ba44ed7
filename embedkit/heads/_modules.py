"""torch modules behind the torch heads: standardisation, linear, MLP, attention pooling."""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """Subtract the training mean and divide by the training std; saved with the weights."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("inv_std", torch.ones(shape))

    @torch.no_grad()
    def set_from(self, X: torch.Tensor, dims: tuple[int, ...]) -> None:
        """Set mean and 1/std from ``X`` reduced over ``dims`` (float64 sums for accuracy)."""
        mean = X.double().mean(dim=dims, keepdim=True)[0]
        var = X.double().var(dim=dims, keepdim=True, correction=0)[0]
        self.mean.copy_(mean.float())
        self.inv_std.copy_((1.0 / torch.sqrt(var + 1e-12)).clamp(max=1e6).float())

    def forward(self, x):
        return (x - self.mean) * self.inv_std


def linear_module(n_in: int, n_out: int) -> nn.Module:
    """Standardise, then one linear layer: (N, D) -> (N, K)."""
    return nn.Sequential(Standardize((n_in,)), nn.Linear(n_in, n_out))


def mlp_module(n_in: int, n_out: int, hidden: int, depth: int, dropout: float) -> nn.Module:
    """Standardise, then ``depth`` x (Linear -> BatchNorm -> ReLU -> Dropout), then Linear."""
    layers: list[nn.Module] = [Standardize((n_in,))]
    width = n_in
    for _ in range(depth):
        layers += [
            nn.Linear(width, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        ]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class AttentionPool2d(nn.Module):
    """Attention pooling over the H x W positions of a feature map, then a linear classifier.

    Each of ``heads`` learned queries attends over the positions of (features +
    learned position embedding); the pooled vectors are concatenated, normalised and
    classified. Unlike global average pooling it can tell *where* a pattern is.
    """

    def __init__(self, channels: int, positions: int, n_out: int, heads: int, dim: int):
        super().__init__()  # dim is a multiple of heads (AttnPoolHead checks it)
        self.heads, self.dim = heads, dim
        self.standardize = Standardize((1, channels, 1, 1))
        self.pos = nn.Parameter(torch.randn(positions, channels) * 0.02)  # (HW, C)
        self.query = nn.Parameter(torch.randn(heads, dim // heads) * (dim // heads) ** -0.5)
        self.key = nn.Linear(channels, dim)
        self.value = nn.Linear(channels, dim)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, n_out)

    def forward(self, x):  # (N, C, H, W)
        n = x.shape[0]
        tokens = self.standardize(x).flatten(2).transpose(1, 2) + self.pos  # (N, HW, C)
        k = self.key(tokens).view(n, -1, self.heads, self.dim // self.heads)  # (N, HW, h, d)
        v = self.value(tokens).view(n, -1, self.heads, self.dim // self.heads)
        att = torch.einsum("nphd,hd->nhp", k, self.query).softmax(dim=-1)  # (N, h, HW)
        pooled = torch.einsum("nhp,nphd->nhd", att, v).reshape(n, self.dim)  # (N, dim)
        return self.fc(self.norm(pooled))
