"""A scikit-learn transformer that embeds raw inputs through the feature store.

:class:`CachedEncoder` turns texts, image paths or arrays into features with an ONNX model.
Every input is looked up in the store by its content (the sha256 of the text, the file's
bytes, or the array row); only what is missing runs through :func:`embedkit.extract.extract`
(with its provenance rules: a store made by another model, tap set, preprocessing or dtype is
refused, naming the field), so a second fit on the same data costs a hash and a read.

    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> pipe = make_pipeline(CachedEncoder("minilm.onnx", store="cache.h5"),
    ...                      LogisticRegression())                   # doctest: +SKIP
    >>> pipe.fit(texts, labels).predict(["a new text"])              # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from embedkit.errors import UserInputError
from embedkit.extract import ImageSpec, Listing, Source, extract, load_model
from embedkit.extract.preprocess import make_preprocessor
from embedkit.extract.sources import content_sha
from embedkit.store import FeatureStore, Fingerprint
from embedkit.store.txn.begin import check_fingerprint

__all__ = ["CachedEncoder"]


class CachedEncoder(TransformerMixin, BaseEstimator):
    """Embed texts, image paths or arrays with an ONNX model, cached in a feature store.

    Parameters
    ----------
    model : str or Path
        An ONNX file (from ``embedkit export``, or any graph with a preprocessing spec).
    store : str or Path, optional
        The HDF5 store that caches features by content; created when missing and shared by
        every clone (``GridSearchCV`` folds, pipelines). None: nothing is kept between calls.
    tap : str, optional
        The tap whose features are returned (default: the model's first); only this tap is
        computed and stored.
    batch_size : int
        Items per ONNX Runtime run.
    device : {"auto", "cpu", "cuda"}
        Where the model runs.
    dtype : {"float32", "float16"}
        Storage dtype of the store; features are returned as float32.
    progress : bool
        A progress bar while missing items are computed.

    Attributes
    ----------
    kind_ : str
        What ``fit`` was given: ``"text"``, ``"image"`` (paths) or ``"array"``.
    n_features_in_ : int
        Columns of ``X`` (array inputs only).

    Examples
    --------
    >>> enc = CachedEncoder("minilm.onnx", store="cache.h5")        # doctest: +SKIP
    >>> X = enc.fit_transform(["a short text", "another one"])      # doctest: +SKIP
    >>> X.shape                                                     # doctest: +SKIP
    (2, 384)
    """

    def __init__(
        self,
        model,
        *,
        store=None,
        tap: str | None = None,
        batch_size: int = 32,
        device: str = "auto",
        dtype: str = "float32",
        progress: bool = False,
    ):
        self.model = model
        self.store = store
        self.tap = tap
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.progress = progress

    def fit(self, X, y=None):
        """Read the model's description (hash, taps, preprocessing) and check ``X``'s kind."""
        spec = load_model(self.model, taps=None if self.tap is None else [self.tap])
        self.tap_ = self.tap or spec.taps[0].name
        image_model = isinstance(spec.preprocess, ImageSpec)
        if _is_strings(X):
            self.kind_ = "image" if image_model else "text"
        else:
            validate_data(self, X, dtype=None if image_model else np.float32)
            self.kind_ = "array"
        pre = make_preprocessor(spec, self.kind_, "CachedEncoder input")
        self.model_sha256_ = spec.sha256
        self.preprocess_ = pre.spec.to_dict()
        self.taps_ = tuple(t for t in spec.taps if t.name == self.tap_)
        return self

    def transform(self, X) -> np.ndarray:
        """Features of ``X`` ``(n, features)`` float32, computing only what the store lacks."""
        check_is_fitted(self, "kind_")
        items = self._items(X)
        digests = [content_sha(item) for item in items]
        if self.store is None:
            with tempfile.TemporaryDirectory(prefix="embedkit-encoder-") as tmp:
                return self._encode(items, digests, Path(tmp) / "features.h5")
        return self._encode(items, digests, Path(self.store))

    def _encode(self, items: list, digests: list[str], path: Path) -> np.ndarray:
        rows = self._lookup(path, digests)
        missing = sorted({d for d, r in zip(digests, rows) if r < 0})
        if missing:
            first = {d: i for i, d in reversed(list(enumerate(digests)))}
            source = _Items([items[first[d]] for d in missing], missing, self.kind_)
            extract(self.model, source, path, taps=(self.tap_,), batch_size=self.batch_size,
                    device=self.device, dtype=self.dtype, progress=self.progress)  # fmt: skip
            rows = self._lookup(path, digests)
            if (rows < 0).any():  # a bad item is raised by extract; this is a safety net
                raise UserInputError(f"{path}: {int((rows < 0).sum())} inputs were not stored")
        with FeatureStore(path) as fs:
            x = fs.features(self.tap_, rows=rows)  # (n, *shape)
        return x.reshape(len(x), -1)

    def _lookup(self, path: Path, digests: list[str]) -> np.ndarray:
        """Each digest's row in the store (-1 where missing); the store must match the model."""
        if not path.exists():
            return np.full(len(digests), -1, np.int64)
        with FeatureStore(path) as fs:
            self._check(fs)
            where = {item: row for row, item in enumerate(fs.ids().tolist())}
        return np.array([where.get(d, -1) for d in digests], np.int64)

    def _check(self, fs: FeatureStore) -> None:
        """Refuse a store made differently, as extract would (shapes come from the store)."""
        stored = {t.name: t for t in fs.fingerprint.tap_infos}
        taps = [replace(t, shape=stored[t.name].shape) if t.name in stored else t
                for t in self.taps_]  # fmt: skip
        mine = Fingerprint.create(self.model_sha256_, taps, self.preprocess_, self.dtype)
        check_fingerprint(fs.fingerprint, mine, fs.path)

    def _items(self, X) -> list:
        if self.kind_ == "array":
            image = self.preprocess_.get("kind") == "image"
            X = validate_data(self, X, dtype=None if image else np.float32, reset=False)
            return list(np.ascontiguousarray(X))
        if not _is_strings(X):
            raise UserInputError(
                f"CachedEncoder was fitted on {self.kind_} inputs; pass a list of strings"
            )
        items = [str(x) for x in X]
        return [_read(path) for path in items] if self.kind_ == "image" else items

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = ["float32"]  # features are always float32
        return tags


class _Items(Source):
    """The inputs CachedEncoder still needs, with their content digests as ids."""

    def __init__(self, items: list, digests: list[str], kind: str):
        super().__init__(Path("CachedEncoder"), None)
        self.items, self.digests, self.kind = items, digests, kind

    def scan(self) -> Listing:
        n = len(self.items)
        return Listing(tuple(self.digests), tuple(self.digests), (None,) * n, (None,) * n)

    def read(self, index: int) -> Any:
        return self.items[index]

    def describe(self, index: int) -> str:
        item = self.items[index]
        return f"CachedEncoder input {item[:40]!r}" if isinstance(item, str) else (
            f"CachedEncoder input with sha256 {self.digests[index][:12]}"
        )  # fmt: skip


def _is_strings(X) -> bool:
    if isinstance(X, str):
        raise UserInputError("CachedEncoder takes a list of inputs, got one string; wrap it")
    if isinstance(X, np.ndarray):
        return X.dtype.kind in "UO" and X.ndim == 1
    if hasattr(X, "dtype") and hasattr(X, "tolist") and getattr(X, "ndim", 2) == 1:
        return all(isinstance(x, str) for x in X.tolist())  # a pandas Series
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(x, str) for x in X)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot read ({exc.strerror or exc}); pass image paths"
        ) from None
