"""Stream a head over a feature store larger than memory with ``partial_fit``.

head = make_head("sgd", random_state=0)
fit_store(head, "feats.h5", block_rows=4096, epochs=5)
"""

from __future__ import annotations

import os

import numpy as np

from embedkit.errors import UserInputError


def fit_store(
    head,
    store,
    *,
    tap: str | None = None,
    rows=None,
    block_rows: int = 4096,
    epochs: int = 5,
    classes=None,
    seed: int = 0,
    memory_limit: int = 256 << 20,
):
    """Train ``head`` by ``partial_fit`` over blocks of a store, holding one block at a time.

    Parameters
    ----------
    head : estimator with ``partial_fit(X, y, classes=...)``
        e.g. ``make_head("sgd")``.
    store : str, path or FeatureStore
        The feature store; a path is opened (and closed) here.
    tap : str or None
        The tap to read; None is the store's default tap.
    rows : None, slice or int array
        The rows to train on (e.g. ``fs.split()["train"]``); None is every labelled row.
    block_rows : int
        Rows per ``partial_fit`` call; memory holds about one block of features.
    epochs : int
        Passes over the rows, each in a new shuffled block order.
    classes : array or None
        All class labels; None reads them from the store's labels.
    seed : int
        Seed of the block order; epoch ``e`` uses ``seed + e``.
    memory_limit : int
        Bytes of features under which the selection is read into memory at once;
        above it, blocks are read in shuffled order and memory stays at a few blocks.

    Returns
    -------
    head : the fitted head.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from embedkit.store import FeatureStore
    >>> from embedkit.heads import make_head
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> path = os.path.join(tempfile.mkdtemp(), "f.h5")
    >>> FeatureStore.from_arrays(path, X, y).close()
    >>> fit_store(make_head("sgd", random_state=0), path, block_rows=128).score(X, y) > 0.9
    True
    """
    if not hasattr(head, "partial_fit"):
        raise UserInputError(
            f"{type(head).__name__} cannot stream (no partial_fit); use sgd, linear or mlp"
        )
    if block_rows < 2 or epochs < 1:
        raise UserInputError(
            f"block_rows must be >= 2 and epochs >= 1; got block_rows={block_rows}, epochs={epochs}"
        )
    from embedkit.store import FeatureStore

    fs = FeatureStore(store) if isinstance(store, (str, os.PathLike)) else store
    try:
        if classes is None:
            labels = fs.labels(rows)
            classes = np.unique(labels[labels >= 0])
        for epoch in range(epochs):
            batches = fs.iter_batches(
                block_rows,
                tap=tap,
                rows=rows,
                shuffle=True,
                seed=seed + epoch,
                labels=True,
                memory_limit=memory_limit,
                block_rows=block_rows,
                buffer_blocks=2,
            )
            for X, y in batches:
                keep = y >= 0  # -1 marks unlabelled rows
                if keep.sum() >= 2:
                    head.partial_fit(X[keep], y[keep], classes=classes)
    finally:
        if fs is not store:
            fs.close()
    return head
