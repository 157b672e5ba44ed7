"""The one stratified splitter: exact sizes, class shares, and its random fallback."""

from __future__ import annotations

import numpy as np
import pytest

from embedkit.errors import UserInputError
from embedkit.rows.splits import stratified_split


def test_takes_exactly_size_rows_keeping_class_shares():
    rows = np.arange(100, 400)  # rows of a store, not 0..n-1
    labels = np.repeat([0, 1, 2], [150, 100, 50])
    kept, taken = stratified_split(rows, labels, 60, seed=3)
    assert len(taken) == 60 and sorted(np.concatenate([kept, taken])) == rows.tolist()
    share = np.bincount(labels[taken - 100], minlength=3) / 60
    assert np.allclose(share, [0.5, 1 / 3, 1 / 6], atol=0.02)
    again = stratified_split(rows, labels, 60, seed=3)
    assert np.array_equal(again[1], taken) and not np.array_equal(
        stratified_split(rows, labels, 60, seed=4)[1], taken
    )


def test_falls_back_to_a_random_split_when_a_class_cannot_give_a_row():
    labels = np.array([0] * 9 + [1])  # class 1 has one row: it cannot be in both parts
    kept, taken = stratified_split(np.arange(10), labels, 0.3, seed=0)
    assert len(taken) == 3 and len(kept) == 7


def test_refuses_an_empty_or_whole_part():
    with pytest.raises(UserInputError, match="cannot take 5 of 5 rows"):
        stratified_split(np.arange(5), None, 5, seed=0)
