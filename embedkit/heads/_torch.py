"""The estimator shell of the torch heads: parameters, ``initialize``, fit, stream, predict.

Built lazily, skorch style: :meth:`TorchHead.initialize` creates ``module_``,
``optimizer_`` and an empty ``history_`` from ``classes_`` and ``feature_shape_``. ``fit``,
the first ``partial_fit`` and ``load_head`` all call it, so a fitted, a streamed and a
loaded head hold the same state. The loop and its pieces (solvers, schedules, early
stopping) are in ``_training.py``. The feature matrix is put on the device once and
batches are index-selected from it (no DataLoader).

    embedkit train feats.h5 --head mlp --param hidden=512 --param patience=5 --out head/
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import validate_data

from embedkit.errors import UserInputError
from embedkit.heads._params import (
    CLASS_WEIGHT,
    DEVICE,
    MAX_PARAMETERS,
    NON_NEGATIVE,
    OPEN_FRACTION,
    SEED,
    Declared,
    Interval,
    Options,
    check_params,
)
from embedkit.heads._sklearn import binary_as_1d
from embedkit.heads._training import (
    SCHEDULES,
    EarlyStopping,
    MinibatchAdamW,
    make_schedule,
    run_epochs,
    split_batches,
)
from embedkit.heads._validation import check_fitted, check_partial_fit, check_shape, encode_labels
from embedkit.rows.splits import stratified_split

_AUTO = ("auto",)
# The training parameters of every torch head, declared once: name -> (default, what it may
# be (see _params.py)). Each head's table is its own entries | TRAIN_PARAMS.
TRAIN_PARAMS = {
    "weight_decay": (1e-4, [NON_NEGATIVE]),  # AdamW decoupled weight decay
    "batch_size": (1024, [Interval(int, 1, 2**24)]),  # rows per step; all rows stay on the device
    "max_epochs": (None, [Interval(int, 1, 10**6), None]),  # None: max(20, min_steps' epochs)
    "min_steps": (100, [Interval(int, 0, 10**8)]),  # steps few-shot fits still get (300: same acc.)
    "schedule": ("cosine", [Options(SCHEDULES)]),  # "cosine", "onecycle" or "constant" (per step)
    "early_stopping": ("auto", [bool, Options(_AUTO)]),  # auto: with val data or >= 1,000 rows
    "patience": (5, [Interval(int, 1, 10**4)]),  # epochs without a lower val loss, then stop
    "validation_fraction": (0.1, [OPEN_FRACTION]),  # held out when fit gets no val data
    "class_weight": (None, CLASS_WEIGHT),  # None, "balanced" or {label: weight}
    "balanced_sampler": (False, [bool]),  # draw each epoch's rows with equal class probability
    "label_smoothing": (0.0, [Interval(float, 0, 1, "left")]),  # for noisy labels
    "standardize": ("auto", [bool, Options(_AUTO)]),  # folds train mean/std in; auto: >= 1,000 rows
    "device": ("auto", [DEVICE]),  # "auto" (cuda when available), "cpu", "cuda", "cuda:1"
    "mixed_precision": ("auto", [bool, Options(_AUTO)]),  # bfloat16 autocast on CUDA, not CPU
    "n_threads": (None, [Interval(int, 1, 4096), None]),  # fit's CPU threads; None: 1 if small
    "random_state": (None, SEED),  # seed of initialisation, shuffling and the validation split
}
LEARNING_RATE = [Interval(float, 0, 10, "right")]
_EVAL_BATCH = 65536


class TorchHead(Declared, ClassifierMixin, BaseEstimator):
    """Base class of the torch heads: training parameters, fit, partial_fit and predict.

    A subclass declares ``_params = {its own} | TRAIN_PARAMS`` (:class:`Declared` makes
    its ``__init__``) and defines ``_build_module(n_classes)``.

    Attributes
    ----------
    module_, optimizer_ : the torch module and its AdamW optimizer (``initialize``).
    solver_ : str
        "adamw", or "lbfgs" when ``fit`` ran full-batch L-BFGS (whose optimizer is not kept).
    history_ : list of dict
        Per epoch: ``epoch, train_loss, val_loss, val_accuracy, lr, seconds``.
    best_epoch_ : int or None
        The epoch of lowest validation loss (its weights are restored with early stopping).
    """

    spatial_input = False  # True: takes (N, C, H, W) maps, which from_store then keeps whole

    # ---- state --------------------------------------------------------------------
    def initialize(self):
        """Build ``module_`` on ``device``, its AdamW ``optimizer_`` and an empty ``history_``.

        Needs ``classes_`` and ``feature_shape_``. Returns the head. Parameters are
        checked first, and a module of over ``MAX_PARAMETERS`` weights is refused before
        any of them is allocated (it is sized on the ``meta`` device).
        """
        check_params(self)
        return self._initialize()

    def _initialize(self):
        with torch.device("meta"):
            size = sum(p.numel() for p in self._build_module(len(self.classes_)).parameters())
        if size > MAX_PARAMETERS:
            raise UserInputError(
                f"{type(self).__name__} would have {size:,} weights for "
                f"{self.n_features_in_} features (at most {MAX_PARAMETERS:,}); "
                "lower hidden/dim/depth"
            )
        self.module_ = self._build_module(len(self.classes_)).to(self._device())
        # The fused kernel does one pass over all parameters: 1.7x faster per step than
        # the default loop on the CPU, which dominates few-shot fits of the MLP.
        self.optimizer_ = torch.optim.AdamW(
            self.module_.parameters(), lr=float(self.lr), weight_decay=self.weight_decay,
            fused=True,
        )  # fmt: skip
        self.solver_, self.history_, self.best_epoch_, self.n_iter_ = "adamw", [], None, 0
        return self

    def _device(self) -> torch.device:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device = torch.device(self.device if self.device != "auto" else "cuda" if n else "cpu")
        if device.type == "cuda" and (device.index or 0) >= n:
            raise UserInputError(
                f"device {self.device!r} is not on this machine ({n} CUDA device(s)); use "
                "device 'cpu' or 'auto' (--param device=cpu, or params.device in head.json)"
            )
        return device

    def _autocast(self):
        device = self._device()
        use = self.mixed_precision in (True, "auto") and device.type == "cuda"
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)

    def _seed(self) -> int:
        rng = self.random_state  # an int or None (SEED)
        return int(np.random.randint(0, 2**31 - 1) if rng is None else rng)

    def _to_input(self, X: np.ndarray) -> np.ndarray:
        """Reshape validated features into what the module takes; identity by default."""
        return X

    def _validate(self, X, y, reset: bool):
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, allow_nd=self.spatial_input)
        if reset:
            self.feature_shape_ = tuple(int(s) for s in X.shape[1:])
        return X, y

    def _check_X(self, X) -> np.ndarray:
        X = validate_data(self, X, reset=False, dtype=np.float32, allow_nd=self.spatial_input)
        check_shape(self, X, self.feature_shape_)
        return self._to_input(X)

    # ---- fit ----------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None):
        """Train the head on ``X`` (N, ...) and ``y`` (N,); validate on ``X_val``, ``y_val``.

        ``initialize``, then the epochs of ``partial_fit`` on the learning-rate ``schedule``.
        Without validation data, a stratified ``validation_fraction`` split is held out
        when ``early_stopping`` is True (or "auto" with 1,000 rows or more). With early
        stopping, training stops after ``patience`` epochs without a lower validation
        loss and the best weights are restored. ``history_`` holds one dict per epoch.
        """
        check_params(self)  # once: before the device, threads and split they choose
        X, y = self._validate(X, y, reset=True)
        self.classes_, y_index = encode_labels(y)
        seed = self._seed()
        threads = torch.get_num_threads()
        try:
            # Head-sized steps run faster on one thread: no spinning or waiting on busy
            # cores (measured 6x faster than two threads on a shared 2-core machine).
            work = min(len(X), self.batch_size) * int(np.prod(self.feature_shape_))
            torch.set_num_threads(int(self.n_threads or (1 if work <= 2**22 else threads)))
            with _seeded(seed, self._device()):
                self._initialize()
                X, y_index, val = self._validation(self._to_input(X), y_index, X_val, y_val)
                X_t, y_t = self._tensors(X, y_index, standardize=True)
                solver, epochs = self._solver(len(X))
                self.solver_ = solver.name
                class_weight = self.class_weight
                if solver.full_batch and self.balanced_sampler and class_weight is None:
                    class_weight = "balanced"  # no sampler in a full batch: weights instead
                gen = torch.Generator().manual_seed(seed)
                self._epochs(X_t, y_t, y_index, solver, epochs, val=val, class_weight=class_weight,
                             order=lambda: self._order(y_t, gen))  # fmt: skip
        finally:
            torch.set_num_threads(threads)
        return self

    def _validation(self, X, y_index, X_val, y_val):
        """``(X, y_index, (X_val, yv_index) or None)``: validation data given, held out, or none."""
        if X_val is not None:
            return X, y_index, (self._check_X(X_val), encode_labels(y_val, self.classes_)[1])
        auto = self.early_stopping == "auto" and len(X) >= 1000
        if not (self.early_stopping is True or auto) or not self.validation_fraction:
            return X, y_index, None
        n_val = max(1, int(round(self.validation_fraction * len(X))))
        tr, va = stratified_split(np.arange(len(X)), y_index, n_val, seed=self._seed())
        return X[tr], y_index[tr], (X[va], y_index[va])

    def _solver(self, n_rows: int):
        """``(solver, epochs)`` of ``fit``: AdamW minibatches on the LR ``schedule``.

        Epochs scale with the data, so tiny few-shot sets still get ``min_steps`` steps.
        """
        steps = len(split_batches(torch.arange(n_rows), self.batch_size))
        epochs = self.max_epochs or min(2000, max(20, math.ceil(self.min_steps / steps)))
        schedule = make_schedule(self.schedule, self.optimizer_, float(self.lr), epochs * steps)
        return MinibatchAdamW(self.optimizer_, self.batch_size, self._autocast, schedule), epochs

    def _tensors(self, X, y_index, *, standardize: bool):
        """X (N, ...) and labels on the device, kept there for all epochs (no DataLoader)."""
        X_t = torch.tensor(X, device=self._device())
        # "auto": few-shot statistics are too noisy to rescale features by.
        if standardize and (
            self.standardize is True or (self.standardize == "auto" and len(X) >= 1000)
        ):
            std = getattr(self.module_, "standardize", None) or self.module_[0]
            std.set_from(X_t, (0,) if X_t.ndim == 2 else (0, 2, 3))
        return X_t, torch.tensor(y_index, device=X_t.device)

    def _epochs(self, X_t, y_t, y_index, solver, epochs: int, *, order, val=None,
                class_weight=None):  # fmt: skip
        """Run ``epochs`` epochs of ``solver`` over ``X_t``: the loop of fit and partial_fit."""
        weight = None
        if class_weight is not None:
            w = compute_class_weight(class_weight, classes=self.classes_, y=self.classes_[y_index])
            weight = torch.tensor(w, dtype=torch.float32, device=X_t.device)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=self.label_smoothing)
        evaluate, callbacks = None, ()
        if val is not None:
            Xv_t, yv_t = (torch.tensor(a, device=X_t.device) for a in val)
            evaluate = lambda: self._evaluate(Xv_t, yv_t)  # noqa: E731
            if self.early_stopping:
                callbacks = (EarlyStopping(self.patience, self.module_),)
        self.history_ += run_epochs(
            epochs,
            lambda: solver.epoch(self.module_, X_t, y_t, loss_fn, order().to(X_t.device)),
            lr=lambda: solver.optimizer.param_groups[0]["lr"],
            evaluate=evaluate,
            callbacks=callbacks,
            first_epoch=len(self.history_) + 1,
        )
        if val is not None:
            self.best_epoch_ = int(np.argmin([r["val_loss"] for r in self.history_])) + 1
        self.n_iter_ = len(self.history_)
        self.module_.eval()

    def _order(self, y_t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.balanced_sampler:
            counts = torch.bincount(y_t, minlength=len(self.classes_)).clamp(min=1).float()
            weights = (1.0 / counts)[y_t].cpu()
            return torch.multinomial(weights, len(y_t), replacement=True, generator=gen)
        return torch.randperm(len(y_t), generator=gen)

    # ---- streaming ----------------------------------------------------------------
    def partial_fit(self, X, y, classes=None):
        """One epoch over the block ``X``, ``y`` with AdamW at the constant rate ``lr``.

        ``classes`` (all labels) is required on the first call, which also sets the
        standardisation from that block; the feature shape must stay the same. A head
        that was fitted or loaded continues from its weights.
        """
        shape = self.feature_shape_ if hasattr(self, "module_") else None
        first = check_partial_fit(self, X, classes, shape)
        check_params(self)  # every call: set_params may have changed them since
        X, y = self._validate(X, y, reset=first)
        if first:
            self.classes_ = np.unique(np.asarray(classes))
            with _seeded(self._seed(), self._device()):
                self._initialize()
        _, y_index = encode_labels(y, self.classes_)
        X_t, y_t = self._tensors(self._to_input(X), y_index, standardize=first)
        for group in self.optimizer_.param_groups:
            group["lr"] = float(self.lr)  # constant, also after a fit's schedule annealed it
        solver = MinibatchAdamW(self.optimizer_, self.batch_size, self._autocast)
        self._epochs(X_t, y_t, y_index, solver, 1, class_weight=self.class_weight,
                     order=lambda: torch.randperm(len(X_t)))  # fmt: skip
        return self

    # ---- predict ------------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, X_t: torch.Tensor) -> torch.Tensor:
        self.module_.eval()
        device = next(self.module_.parameters()).device
        out = []
        for start in range(0, len(X_t), _EVAL_BATCH):
            xb = X_t[start : start + _EVAL_BATCH].to(device, non_blocking=True)
            with self._autocast():
                out.append(self.module_(xb).float())
        return torch.cat(out)

    def _evaluate(self, Xv_t, yv_t) -> tuple[float, float]:
        logits = self._logits(Xv_t).double()
        loss = torch.nn.functional.cross_entropy(logits, yv_t)
        return float(loss), float((logits.argmax(1) == yv_t).double().mean())

    def logits(self, X) -> np.ndarray:
        """Logits (N, K) in the order of ``classes_``."""
        check_fitted(self, "module_")
        return self._logits(torch.tensor(self._check_X(X))).cpu().numpy()

    def decision_function(self, X):
        """Logits (N, K); for two classes the logit difference (N,), as scikit-learn expects."""
        return binary_as_1d(self.logits(X))

    def predict_proba(self, X):
        """Class probabilities (N, K), a softmax of the logits in float64."""
        return softmax(self.logits(X).astype(np.float64), axis=1)

    def predict(self, X):
        """Predicted labels (N,), taken from ``classes_``."""
        index = np.argmax(self.logits(X), axis=1)  # checks the head is fitted first
        return self.classes_[index]


@contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed torch's global RNG inside the block, and leave the caller's RNG as it was."""
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
