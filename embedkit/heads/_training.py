"""The training loop of the torch heads, and its pluggable pieces.

:func:`run_epochs` runs one solver epoch after another, records each epoch, and hands
the record to callbacks: :class:`EarlyStopping` ends training and restores the weights of
the lowest validation loss. A solver is one of two classes:
:class:`MinibatchAdamW` (shuffled minibatches; an LR schedule from :func:`make_schedule`
steps after each batch) or :class:`FullBatchLBFGS` (the whole matrix per step, for
few-shot linear probes).

    embedkit train feats.h5 --head mlp --param patience=5 --param schedule=onecycle --out head/
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from embedkit.heads._progress import report_epoch

SCHEDULES = ("cosine", "onecycle", "constant")


def make_schedule(name: str, optimizer, lr: float, total_steps: int) -> Callable | None:
    """The per-step LR schedule ``name`` over ``total_steps`` steps (None: constant); the
    name is one of :data:`SCHEDULES`, checked with the head's parameters."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps).step
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=total_steps).step
    return None


def split_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split row indices into batches; a short tail (under half a batch) joins the last one.

    So BatchNorm never sees a batch of one row.
    """
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < max(2, batch_size // 2):
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


class MinibatchAdamW:
    """One epoch = shuffled minibatches of ``batch_size`` rows, one optimizer step each."""

    name = "adamw"
    full_batch = False

    def __init__(self, optimizer, batch_size: int, autocast, after_step: Callable | None = None):
        self.optimizer, self.batch_size = optimizer, int(batch_size)
        self.autocast, self.after_step = autocast, after_step

    def epoch(self, module, X_t, y_t, loss_fn, order: torch.Tensor) -> float:
        """Train on the rows of ``X_t`` in ``order``; return the mean training loss."""
        module.train()
        total = torch.zeros((), device=X_t.device)
        for idx in split_batches(order, self.batch_size):
            with self.autocast():
                loss = loss_fn(module(X_t[idx]).float(), y_t[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.after_step is not None:
                self.after_step()
            total += loss.detach() * len(idx)
        return float(total) / len(order)


class FullBatchLBFGS:
    """One epoch = up to 25 L-BFGS iterations on mean loss + ``l2``/2 |W|^2 over all rows.

    With ``l2 = 1/N`` it is the objective of ``LogisticRegression(C=1)``; minibatch steps
    underfit few-shot data that this solves in a few iterations.
    """

    name = "lbfgs"
    full_batch = True

    def __init__(self, params, weight: torch.Tensor, l2: float):
        self.weight, self.l2 = weight, float(l2)
        self.optimizer = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=25,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-6,
            tolerance_change=1e-9,
        )

    def epoch(self, module, X_t, y_t, loss_fn, order=None) -> float:
        module.train()

        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(module(X_t), y_t) + 0.5 * self.l2 * (self.weight**2).sum()
            loss.backward()
            return loss

        return float(self.optimizer.step(closure).detach())


class EarlyStopping:
    """Stop after ``patience`` epochs without a lower validation loss; copy the weights at
    each new lowest one, and restore them at the end."""

    def __init__(self, patience: int, module: torch.nn.Module):
        self.patience, self.module = int(patience), module
        self.best, self.best_epoch, self.state = math.inf, 0, None

    def on_epoch_end(self, record: dict) -> bool:
        if record["val_loss"] < self.best:
            self.best, self.best_epoch = record["val_loss"], record["epoch"]
            self.state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        return record["epoch"] - self.best_epoch >= self.patience

    def on_train_end(self) -> None:
        if self.state is not None:
            self.module.load_state_dict(self.state)


def run_epochs(
    epochs: int,
    train_epoch: Callable[[], float],
    *,
    lr: Callable[[], float],
    evaluate: Callable[[], tuple[float, float]] | None = None,
    callbacks: tuple = (),
    first_epoch: int = 1,
) -> list[dict]:
    """Run up to ``epochs`` epochs; return one record per epoch.

    A record holds ``epoch, train_loss, val_loss, val_accuracy, lr, seconds`` (the
    validation fields are None without ``evaluate``). Training ends early when a callback's
    ``on_epoch_end(record)`` returns True; every callback's ``on_train_end()`` runs last.
    """
    history = []
    for epoch in range(first_epoch, first_epoch + epochs):
        start, rate = time.perf_counter(), lr()
        train_loss = train_epoch()
        val_loss, val_accuracy = evaluate() if evaluate else (None, None)
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                  "val_accuracy": val_accuracy, "lr": rate,
                  "seconds": time.perf_counter() - start}  # fmt: skip
        history.append(record)
        # a line now and then under epoch_progress (embedkit train): epoch n of N, ETA
        report_epoch(record, of=first_epoch + epochs - 1)
        if any([callback.on_epoch_end(record) for callback in callbacks]):
            break
    for callback in callbacks:
        callback.on_train_end()
    return history
