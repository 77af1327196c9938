"""Batch, mini-batch and stochastic iteration: coverage, step counts, order and the batch-size parser."""
from __future__ import annotations

import math

import numpy as np
import pytest

from study.core.batches import FULL, BatchIterator, parse_batch_size, resolve, steps_per_epoch


def _indices(batch, n):
    return np.arange(n)[batch]  # works for index arrays and slices alike


def _epoch(it):
    return [_indices(b, it.n) for b in it.epoch()]


@pytest.mark.parametrize("n", [1, 2, 10, 97, 128])
@pytest.mark.parametrize("batch_size", [FULL, 1, 2, 7, 32, 64, 128, 500])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_sample_exactly_once_per_epoch(n, batch_size, shuffle):
    it = BatchIterator(n, batch_size, seed=3, shuffle=shuffle)
    b = n if batch_size == FULL else min(batch_size, n)
    expected_steps = math.ceil(n / b)
    for _ in range(3):
        batches = _epoch(it)
        assert len(batches) == expected_steps == it.steps_per_epoch == steps_per_epoch(n, batch_size)
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))
        sizes = [len(x) for x in batches]
        assert all(s == b for s in sizes[:-1])  # all full except possibly the last
        assert sizes[-1] == n - b * (expected_steps - 1) > 0  # the last, smaller batch is kept


def test_steps_per_epoch_follow_the_lecture_table():
    n = 100
    assert steps_per_epoch(n, FULL) == 1  # batch: one update per epoch
    assert steps_per_epoch(n, 1) == n  # stochastic: N updates
    assert steps_per_epoch(n, 32) == 4  # mini-batch: ceil(N / B), 32+32+32+4
    assert steps_per_epoch(n, "32") == 4
    assert steps_per_epoch(n, 1000) == 1
    assert resolve(FULL, n) == n and resolve(32, n) == 32 and resolve(1000, n) == n


def test_same_seed_same_order_whatever_the_batch_size():
    n = 50
    orders = {}
    for b in (1, 3, 7, 16, 49):
        it = BatchIterator(n, b, seed=11)
        orders[b] = [np.concatenate(_epoch(it)) for _ in range(3)]
    first = orders[1]
    for b, epochs in orders.items():
        for e in range(3):
            np.testing.assert_array_equal(epochs[e], first[e], err_msg=f"batch size {b}, epoch {e}")
    assert not np.array_equal(first[0], first[1])  # a fresh permutation every epoch
    assert not np.array_equal(first[0], np.arange(n))  # and really shuffled
    other = BatchIterator(n, 7, seed=12)
    assert not np.array_equal(np.concatenate(_epoch(other)), first[0])  # another seed, another order


def test_shuffle_off_keeps_the_given_order():
    it = BatchIterator(10, 4, seed=0, shuffle=False)
    for _ in range(2):
        assert [list(b) for b in _epoch(it)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    it = BatchIterator(5, 1, seed=0, shuffle=False)
    assert [list(b) for b in _epoch(it)] == [[0], [1], [2], [3], [4]]


@pytest.mark.parametrize("value, expected", [("full", FULL), ("FULL", FULL), (" full ", FULL), (1, 1), ("1", 1),
                                             (32, 32), ("128", 128), (np.int64(64), 64)])
def test_parse_batch_size_accepts(value, expected):
    assert parse_batch_size(value) == expected


@pytest.mark.parametrize("value", [0, -1, "0", "-1", "abc", 1.5, "1.5", "", None, "full batch", "3e1"])
def test_parse_batch_size_rejects(value):
    with pytest.raises(ValueError):
        parse_batch_size(value)
    with pytest.raises(ValueError):
        BatchIterator(10, value)
