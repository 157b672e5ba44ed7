"""The torch heads: linear, MLP and attention pooling over spatial feature maps, and the
torch modules they build (each standardises its input with the training statistics).

Each head declares its own parameters before the training parameters of
:data:`~embedkit.heads._torch.TRAIN_PARAMS` (all in its signature, so ``get_params`` and
``clone`` see them).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from embedkit.errors import UserInputError
from embedkit.heads._params import MAX_WIDTH, NON_NEGATIVE, Interval, Options
from embedkit.heads._torch import LEARNING_RATE, TRAIN_PARAMS, TorchHead
from embedkit.heads._training import FullBatchLBFGS

SOLVERS = ("auto", "adamw", "lbfgs")
LBFGS_MAX_ROWS = 4096  # solver="auto": full-batch L-BFGS up to this many training rows


class LinearHead(TorchHead):
    """A linear layer on standardised features.

    Parameters
    ----------
    lr : float
        Peak learning rate (AdamW).
    solver : {"auto", "adamw", "lbfgs"}
        "auto" uses full-batch L-BFGS up to 4,096 training rows (few-shot data, where
        minibatch steps underfit) and AdamW minibatches above.
    l2 : "auto" or float
        L-BFGS only: the penalty l2/2 |W|^2 on the mean loss; "auto" is 1/N, the same
        objective as ``LogisticRegression(C=1)``.
    weight_decay, batch_size, max_epochs, ...
        The training parameters of every torch head, ``TRAIN_PARAMS`` in ``_torch.py``.

    Attributes
    ----------
    module_, optimizer_, solver_, history_, best_epoch_ : see :class:`TorchHead`.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(300, 16, n_informative=8, random_state=0)
    >>> head = LinearHead(random_state=0).fit(X, y)
    >>> head.score(X, y) > 0.8, len(head.history_) >= 20
    (True, True)
    """

    _params = {
        "lr": (1e-2, LEARNING_RATE),
        "solver": ("auto", [Options(SOLVERS)]),
        "l2": ("auto", [Options(("auto",)), NON_NEGATIVE]),
    } | TRAIN_PARAMS

    def _build_module(self, n_classes: int):  # standardise, then (N, D) -> (N, K)
        n_in = self.n_features_in_
        return nn.Sequential(Standardize((n_in,)), nn.Linear(n_in, n_classes))

    def _solver(self, n_rows: int):
        if self.solver == "lbfgs" or (self.solver == "auto" and n_rows <= LBFGS_MAX_ROWS):
            l2 = 1.0 / n_rows if self.l2 == "auto" else float(self.l2)
            solver = FullBatchLBFGS(self.module_.parameters(), self.module_[1].weight, l2)
            return solver, int(self.max_epochs or 20)  # each epoch: up to 25 iterations
        return super()._solver(n_rows)


class MLPHead(TorchHead):
    """``depth`` x (Linear -> BatchNorm -> ReLU -> Dropout) of width ``hidden``, then Linear.

    Parameters
    ----------
    hidden : int
        Width of the hidden layers.
    depth : int
        Number of hidden blocks.
    dropout : float
        Dropout after each block.
    lr : float
        Peak learning rate. The training parameters: as for :class:`LinearHead`.

    Notes
    -----
    The defaults ``dropout=0.5, lr=1e-3`` were chosen by cross-validation of the training
    rows (2 x 5 folds) on three reference stores, fortunes through mpnet and MiniLM and
    Fashion-MNIST through Lite0: the best mean of four settings ({0.2, 0.5} x {3e-3,
    1e-3}), and above the former 0.2 and 3e-3 on each store (issue 23;
    ``benchmarks/bench_mlp_defaults.py``).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(300, 16, n_informative=8, random_state=0)
    >>> MLPHead(64, depth=2, random_state=0).fit(X, y).predict_proba(X[:2]).shape
    (2, 2)
    """

    _params = {
        "hidden": (512, [Interval(int, 1, MAX_WIDTH)]),
        "depth": (1, [Interval(int, 1, 16)]),
        "dropout": (0.5, [Interval(float, 0, 1, "left")]),
        "lr": (1e-3, LEARNING_RATE),
    } | TRAIN_PARAMS

    def _build_module(self, n_classes: int):
        layers: list[nn.Module] = [Standardize((self.n_features_in_,))]
        width, hidden = self.n_features_in_, int(self.hidden)
        for _ in range(int(self.depth)):
            layers += [
                nn.Linear(width, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(self.dropout),
            ]
            width = hidden
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)


class AttnPoolHead(TorchHead):
    """Attention pooling over the positions of a (N, C, H, W) feature map, then Linear.

    Pooled features (N, C) also work: they are a 1 x 1 map.

    Parameters
    ----------
    heads : int
        Number of learned queries (attention heads).
    dim : int
        Width of the pooled vector (a multiple of ``heads``).
    lr : float
        Peak learning rate. The training parameters: as for :class:`LinearHead`.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 8, 3, 3)).astype("float32")
    >>> y = (X[:, 0, 0, 0] > 0).astype(int)
    >>> AttnPoolHead(2, dim=16, random_state=0).fit(X, y).predict(X[:4]).shape
    (4,)
    """

    spatial_input = True
    _params = {
        "heads": (4, [Interval(int, 1, 256)]),
        "dim": (128, [Interval(int, 1, MAX_WIDTH)]),
        "lr": (3e-3, LEARNING_RATE),
    } | TRAIN_PARAMS

    def _to_input(self, X: np.ndarray) -> np.ndarray:
        if X.ndim == 2:
            return X[:, :, None, None]  # (N, C) -> (N, C, 1, 1)
        if X.ndim != 4:
            raise UserInputError(
                f"AttnPoolHead takes (N, C, H, W) feature maps or (N, C) features; got shape "
                f"{X.shape}; extract a spatial tap (pooling 'none')"
            )
        return X

    def _build_module(self, n_classes: int):
        channels, height, width = (self.feature_shape_ + (1, 1))[:3]
        if int(self.dim) % int(self.heads):
            raise UserInputError(
                f"AttnPoolHead dim={self.dim} must be a multiple of heads={self.heads}"
            )
        return AttentionPool2d(channels, height * width, n_classes, int(self.heads), int(self.dim))


# -- the modules ------------------------------------------------------------------------
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
