"""The torch heads: linear, MLP and attention pooling over spatial feature maps.

Every parameter is listed in each ``__init__`` because scikit-learn reads the
signature for ``get_params``/``clone``; the shared ones are documented on
:class:`LinearHead`.
"""

from __future__ import annotations

import numpy as np
import torch

from embedkit.errors import UserInputError
from embedkit.heads import _modules
from embedkit.heads._torch import TorchHead

SOLVERS = ("auto", "adamw", "lbfgs")
LBFGS_MAX_ROWS = 4096  # solver="auto": full-batch L-BFGS up to this many training rows

# The training parameters every torch head takes, with their defaults.
TRAIN_DEFAULTS = dict(
    weight_decay=1e-4,  # AdamW decoupled weight decay
    batch_size=1024,  # rows per step; the full matrix stays on the device
    max_epochs=None,  # None: max(20, enough epochs for min_steps optimizer steps)
    min_steps=300,  # few-shot data still gets this many steps (see ANCHORS.md)
    schedule="cosine",  # "cosine", "onecycle" or "constant"
    early_stopping="auto",  # True, False, or "auto": on with validation data or >= 1,000 rows
    patience=5,  # epochs without a lower validation loss before stopping
    validation_fraction=0.1,  # stratified hold-out when no validation data are given
    validation_data=None,  # (X_val, y_val), or pass fit(X, y, X_val=..., y_val=...)
    class_weight=None,  # None, "balanced" or {label: weight}
    balanced_sampler=False,  # draw each epoch's rows with equal class probability
    label_smoothing=0.0,  # for noisy labels
    standardize="auto",  # fold the training mean/std into the module; auto: >= 1,000 rows
    device="auto",  # "auto" (cuda when available), "cpu", "cuda", "cuda:1"
    mixed_precision="auto",  # bfloat16 autocast on CUDA; ignored on CPU
    n_threads=None,  # torch CPU threads during fit; None leaves torch's default
    random_state=None,  # seed of initialisation, shuffling and the validation split
)


class LinearHead(TorchHead):
    """A linear layer on standardised features, trained with AdamW.

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
    weight_decay, batch_size, max_epochs, min_steps, schedule, early_stopping, patience,
    validation_fraction, validation_data, class_weight, balanced_sampler, label_smoothing,
    standardize, device, mixed_precision, n_threads, random_state
        Training parameters shared by the torch heads; see ``TRAIN_DEFAULTS``.

    Attributes
    ----------
    module_, optimizer_ : the torch module and optimizer built by ``fit``.
    history_ : list of dict
        Per epoch: ``epoch, train_loss, val_loss, val_accuracy, lr, seconds``.
    best_epoch_ : int or None
        The epoch of lowest validation loss (its weights are restored).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(300, 16, n_informative=8, random_state=0)
    >>> head = LinearHead(random_state=0).fit(X, y)
    >>> head.score(X, y) > 0.8, len(head.history_) >= 20
    (True, True)
    """

    def __init__(
        self,
        lr: float = 1e-2,
        *,
        solver: str = "auto",
        l2="auto",
        weight_decay=1e-4,
        batch_size=1024,
        max_epochs=None,
        min_steps=300,
        schedule="cosine",
        early_stopping="auto",
        patience=5,
        validation_fraction=0.1,
        validation_data=None,
        class_weight=None,
        balanced_sampler=False,
        label_smoothing=0.0,
        standardize="auto",
        device="auto",
        mixed_precision="auto",
        n_threads=None,
        random_state=None,
    ):
        self.lr = lr
        self.solver = solver
        self.l2 = l2
        _set_train_params(self, locals())

    def _build_module(self, n_classes: int):
        return _modules.linear_module(self.n_features_in_, n_classes)

    def _resolve_solver(self, n_rows: int) -> str:
        if self.solver not in SOLVERS:
            raise UserInputError(f"unknown solver {self.solver!r}; use one of: {SOLVERS}")
        if self.solver == "auto":
            return "lbfgs" if n_rows <= LBFGS_MAX_ROWS else "adamw"
        return self.solver

    def _epochs(self, steps_per_epoch: int) -> int:
        if self.solver_ == "lbfgs":
            return int(self.max_epochs or 20)  # each epoch is up to 25 L-BFGS iterations
        return super()._epochs(steps_per_epoch)

    def _make_optimizer(self, total_steps: int):
        if self.solver_ != "lbfgs":
            return super()._make_optimizer(total_steps)
        self.optimizer_ = torch.optim.LBFGS(
            self.module_.parameters(),
            lr=1.0,
            max_iter=25,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
        )
        return None

    def _class_weight(self):
        if self.solver_ == "lbfgs" and self.balanced_sampler and self.class_weight is None:
            return "balanced"  # full batch has no sampler; balanced weights are its equivalent
        return self.class_weight

    def _run_epoch(self, X_t, y_t, order, loss_fn, scheduler, device) -> float:
        if self.solver_ != "lbfgs":
            return super()._run_epoch(X_t, y_t, order, loss_fn, scheduler, device)
        # Full batch: mean loss + l2/2 |W|^2; l2="auto" is 1/N, LogisticRegression's C=1.
        self.module_.train()
        l2 = 1.0 / len(X_t) if self.l2 == "auto" else float(self.l2)
        weight = self.module_[1].weight

        def closure():
            self.optimizer_.zero_grad(set_to_none=True)
            loss = loss_fn(self.module_(X_t), y_t) + 0.5 * l2 * (weight**2).sum()
            loss.backward()
            return loss

        return float(self.optimizer_.step(closure).detach())


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
        Peak learning rate. The other parameters are those of :class:`LinearHead`.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(300, 16, n_informative=8, random_state=0)
    >>> MLPHead(64, depth=2, random_state=0).fit(X, y).predict_proba(X[:2]).shape
    (2, 2)
    """

    def __init__(
        self,
        hidden: int = 512,
        *,
        depth: int = 1,
        dropout: float = 0.2,
        lr: float = 3e-3,
        weight_decay=1e-4,
        batch_size=1024,
        max_epochs=None,
        min_steps=300,
        schedule="cosine",
        early_stopping="auto",
        patience=5,
        validation_fraction=0.1,
        validation_data=None,
        class_weight=None,
        balanced_sampler=False,
        label_smoothing=0.0,
        standardize="auto",
        device="auto",
        mixed_precision="auto",
        n_threads=None,
        random_state=None,
    ):
        self.hidden = hidden
        self.depth = depth
        self.dropout = dropout
        self.lr = lr
        _set_train_params(self, locals())

    def _build_module(self, n_classes: int):
        return _modules.mlp_module(
            self.n_features_in_, n_classes, int(self.hidden), int(self.depth), self.dropout
        )


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
        Peak learning rate. The other parameters are those of :class:`LinearHead`.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 8, 3, 3)).astype("float32")
    >>> y = (X[:, 0, 0, 0] > 0).astype(int)
    >>> AttnPoolHead(2, dim=16, random_state=0).fit(X, y).predict(X[:4]).shape
    (4,)
    """

    _allow_nd = True

    def __init__(
        self,
        heads: int = 4,
        *,
        dim: int = 128,
        lr: float = 3e-3,
        weight_decay=1e-4,
        batch_size=1024,
        max_epochs=None,
        min_steps=300,
        schedule="cosine",
        early_stopping="auto",
        patience=5,
        validation_fraction=0.1,
        validation_data=None,
        class_weight=None,
        balanced_sampler=False,
        label_smoothing=0.0,
        standardize="auto",
        device="auto",
        mixed_precision="auto",
        n_threads=None,
        random_state=None,
    ):
        self.heads = heads
        self.dim = dim
        self.lr = lr
        _set_train_params(self, locals())

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
        shape = (
            self.feature_shape_ + (1, 1) if len(self.feature_shape_) == 1 else (self.feature_shape_)
        )
        channels, height, width = shape
        if int(self.dim) % int(self.heads):
            raise UserInputError(
                f"AttnPoolHead dim={self.dim} must be a multiple of heads={self.heads}"
            )
        return _modules.AttentionPool2d(
            channels, height * width, n_classes, int(self.heads), int(self.dim)
        )


def _set_train_params(head: TorchHead, values: dict) -> None:
    for name in TRAIN_DEFAULTS:
        setattr(head, name, values[name])
