"""Training behaviour of the torch heads: early stopping, imbalance, determinism, tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, recall_score

from embedkit.heads import make_head


def test_early_stopping_restores_the_best_epoch():
    # Few noisy rows and a wide MLP: validation loss bottoms out, then rises.
    X, y = make_classification(260, 40, n_informative=5, flip_y=0.2, random_state=1)
    X = X.astype(np.float32)
    head = make_head(
        "mlp",
        hidden=256,
        lr=1e-2,
        weight_decay=0.0,
        dropout=0.0,
        max_epochs=300,
        batch_size=64,
        patience=8,
        random_state=0,
    )
    head.fit(X[:160], y[:160], X_val=X[160:], y_val=y[160:])
    history = head.history_
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    assert len(history) < 300  # stopped early
    losses = [h["val_loss"] for h in history]
    best = int(np.argmin(losses))
    assert head.best_epoch_ == best + 1 and len(history) == best + 1 + 8
    assert losses[-1] > losses[best]
    restored = log_loss(y[160:], head.predict_proba(X[160:]), labels=head.classes_)
    assert restored == pytest.approx(losses[best], rel=1e-5)
    assert head.score(X[160:], y[160:]) == pytest.approx(history[best]["val_accuracy"])


def test_validation_split_and_schedule_recorded():
    X, y = make_classification(1200, 20, n_informative=6, random_state=0)
    head = make_head("linear", solver="adamw", schedule="onecycle", random_state=0).fit(X, y)
    assert head.history_[0]["val_loss"] is not None  # auto: 10% held out at >= 1,000 rows
    lrs = [h["lr"] for h in head.history_]
    assert max(lrs) > lrs[0]  # onecycle warms up


def test_few_shot_data_gets_enough_steps():
    # Measured by hand: 20 epochs of one batch underfit at 16 shots (0.30 vs 0.63 for LogReg).
    X, y = make_classification(1040, 64, n_informative=8, n_classes=4, random_state=0)
    Xtr, ytr, Xte, yte = X[:40], y[:40], X[40:], y[40:]
    reference = LogisticRegression().fit(Xtr, ytr).score(Xte, yte)
    linear = make_head("linear", random_state=0).fit(Xtr, ytr)
    assert linear.solver_ == "lbfgs" and linear.history_[0]["val_loss"] is None
    assert linear.score(Xte, yte) > reference - 0.03
    mlp = make_head("mlp", hidden=64, random_state=0).fit(Xtr, ytr)
    assert len(mlp.history_) >= mlp.min_steps  # one batch per epoch: epochs scale to min_steps
    assert mlp.score(Xte, yte) > reference - 0.1


def test_class_weight_balanced_improves_minority_recall():
    X, y = make_classification(
        2200, 10, n_informative=4, weights=[0.95, 0.05], class_sep=0.6, random_state=3
    )
    X = X.astype(np.float32)
    Xtr, ytr, Xte, yte = X[:1600], y[:1600], X[1600:], y[1600:]
    common = dict(solver="adamw", max_epochs=40, early_stopping=False, random_state=0)
    plain = make_head("linear", **common).fit(Xtr, ytr)
    balanced = make_head("linear", class_weight="balanced", **common).fit(Xtr, ytr)
    sampled = make_head("linear", balanced_sampler=True, **common).fit(Xtr, ytr)
    r_plain = recall_score(yte, plain.predict(Xte))
    assert recall_score(yte, balanced.predict(Xte)) > r_plain + 0.1
    assert recall_score(yte, sampled.predict(Xte)) > r_plain + 0.1


@pytest.mark.parametrize("name", ["linear", "mlp"])
def test_same_seed_same_predictions(name, tiny):
    X, y, Xte, _ = tiny
    params = {"max_epochs": 10, "label_smoothing": 0.1} | (
        {"solver": "adamw"} if name == "linear" else {}
    )
    a = make_head(name, random_state=7, **params).fit(X, y)
    b = make_head(name, random_state=7, **params).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(Xte), b.predict_proba(Xte))
    c = make_head(name, random_state=8, **params).fit(X, y)
    assert not np.array_equal(a.predict_proba(Xte), c.predict_proba(Xte))


def test_one_shot_and_a_batch_of_one_under_batchnorm():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 24)) * 3
    X1 = (centers + rng.normal(size=(5, 24)) * 0.1).astype(np.float32)  # 1 shot per class
    head = make_head("mlp", hidden=32, random_state=0).fit(X1, np.arange(5))
    assert head.score(X1, np.arange(5)) == 1.0
    # 9 rows with batch_size 8: the last batch would hold 1 row and break BatchNorm.
    X9 = (np.repeat(centers[:3], 3, axis=0) + rng.normal(size=(9, 24)) * 0.1).astype(np.float32)
    y9 = np.repeat(np.arange(3), 3)
    head = make_head("mlp", hidden=32, batch_size=8, max_epochs=30, random_state=0).fit(X9, y9)
    assert np.isfinite(head.history_[-1]["train_loss"])
    assert head.score(X9, y9) == 1.0


def test_attention_pooling_learns_where_a_pattern_is():
    # Class = whether a fixed pattern sits in the top or the bottom half of a 4x4 map:
    # global average pooling sees the same mean for both, attention pooling does not.
    rng = np.random.default_rng(0)
    n, c = 800, 8
    pattern = rng.normal(size=c) * 2
    X = rng.normal(size=(n, c, 4, 4)).astype(np.float32) * 0.5
    y = rng.integers(0, 2, n)
    rows = rng.integers(0, 2, n) + 2 * y  # rows 0-1 for class 0, 2-3 for class 1
    cols = rng.integers(0, 4, n)
    X[np.arange(n), :, rows, cols] += pattern
    Xtr, ytr, Xte, yte = X[:600], y[:600], X[600:], y[600:]
    attn = make_head(
        "attnpool", heads=2, dim=32, lr=1e-2, batch_size=128, max_epochs=60, random_state=0
    )
    attn.fit(Xtr, ytr)
    gap = make_head("linear", random_state=0).fit(Xtr.mean((2, 3)), ytr)
    gap_acc = gap.score(Xte.mean((2, 3)), yte)
    assert attn.score(Xte, yte) > 0.9
    assert gap_acc < 0.7
    assert attn.predict_proba(Xte[:3]).shape == (3, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_mixed_precision_fit(tiny):
    X, y, Xte, yte = tiny
    head = make_head("mlp", device="cuda", max_epochs=20, random_state=0).fit(X, y)
    assert next(head.module_.parameters()).is_cuda
    assert head.score(Xte, yte) > 0.6
