"""Which to-do items go into which batch: fixed-size slices, or text bucketed by length.

Text is tokenised once, up front; each window of :data:`WINDOW` to-do items is sorted by
token count and cut into batches within a budget of ``batch_size`` x the mean token count,
so padding costs almost nothing. The plan is a pure function of the to-do list, so a
killed run plans the same batches and resumes from its journal, and rows land in source
order either way.

    embedkit extract minilm.onnx reviews.csv --out feats.h5 --batch-size 32  # 32 x mean tokens
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedkit.extract.preprocess import TextPreprocessor, TokenTable

WINDOW = 4096  # to-do items sorted together; more gets closer to a global sort


@dataclass(frozen=True)
class Plan:
    """The batches of one run, as source indices, and the pre-tokenised texts (if any)."""

    batches: list[np.ndarray]  # per batch, source indices in source order
    tokens: TokenTable | None = None  # text: tokens of the to-do items, in to-do order
    slot: dict[int, int] | None = None  # text: source index -> row of ``tokens``

    def positions(self, todo: np.ndarray) -> list[np.ndarray]:
        """Each batch as positions into ``todo`` (what the store's journal records)."""
        where = {int(i): p for p, i in enumerate(todo.tolist())}
        return [np.asarray([where[i] for i in rows.tolist()], np.int64) for rows in self.batches]

    def work(self, b: int) -> float:
        """The work of batch ``b`` for the progress ETA: its padded token cells (items x
        longest) for text, which bucketing makes grow through a run; its items otherwise."""
        rows = self.batches[b]
        if self.tokens is None or self.slot is None or not len(rows):
            return float(len(rows))
        lengths = self.tokens.lengths[[self.slot[int(i)] for i in rows.tolist()]]
        return float(len(rows) * int(lengths.max()))

    def feed(self, rows: list[int], pre: TextPreprocessor) -> dict[str, np.ndarray]:
        """The padded feed of text items ``rows`` (source indices) from the kept tokens."""
        assert self.tokens is not None and self.slot is not None
        return pre.feed(self.tokens, [self.slot[i] for i in rows])


def fixed_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Consecutive slices of ``batch_size`` positions out of ``n``.

    Examples
    --------
    >>> [b.tolist() for b in fixed_batches(5, 2)]
    [[0, 1], [2, 3], [4]]
    """
    return [np.arange(lo, min(n, lo + batch_size)) for lo in range(0, n, batch_size)]


def bucket_batches(
    lengths: np.ndarray, token_budget: int, window: int = WINDOW
) -> list[np.ndarray]:
    """Batches of positions whose padded size (items x longest) stays within ``token_budget``.

    Each window of ``window`` consecutive positions is sorted by length and cut greedily;
    an item longer than the budget gets a batch of its own. Positions inside a batch are
    in ascending order.

    Examples
    --------
    >>> lengths = np.array([9, 2, 8, 3, 2, 9])
    >>> [b.tolist() for b in bucket_batches(lengths, token_budget=18)]
    [[1, 3, 4], [0, 2], [5]]
    """
    lengths = np.asarray(lengths, np.int64)
    if token_budget < 1 or window < 1:
        raise ValueError("token_budget and window must be at least 1")
    batches: list[np.ndarray] = []
    for lo in range(0, len(lengths), window):
        order = lo + np.argsort(lengths[lo : lo + window], kind="stable")
        start = 0
        for k in range(1, len(order) + 1):
            # ascending lengths: the batch [start, k] pads to the length of order[k]
            if k == len(order) or (k - start + 1) * int(lengths[order[k]]) > token_budget:
                batches.append(np.sort(order[start:k]))
                start = k
    return batches


def plan_batches(
    todo: np.ndarray,
    batch_size: int,
    *,
    texts: list[str] | None = None,
    pre: TextPreprocessor | None = None,
) -> Plan:
    """Plan the batches of the to-do items ``todo`` (source indices, in source order).

    Without ``texts``, batches are ``batch_size`` consecutive items. With ``texts`` (one
    per to-do item) and their preprocessor, they are tokenised once and bucketed by length
    within a budget of ``batch_size`` x (mean tokens per text, rounded up) padded tokens.

    Examples
    --------
    >>> [b.tolist() for b in plan_batches(np.array([3, 5, 8]), 2).batches]
    [[3, 5], [8]]
    """
    todo = np.asarray(todo, np.int64)
    if texts is None or pre is None:
        return Plan([todo[p] for p in fixed_batches(len(todo), batch_size)])
    tokens = pre.tokenize(texts)
    lengths = tokens.lengths
    budget = batch_size * max(1, -(-int(lengths.sum()) // max(1, len(lengths))))
    positions = bucket_batches(lengths, budget)
    slot = {int(i): p for p, i in enumerate(todo.tolist())}
    return Plan([todo[p] for p in positions], tokens, slot)
