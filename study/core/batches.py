"""Batch, mini-batch and stochastic iteration: which samples feed each update.

The lecture's table, with N training samples and batch size B:
    batch ("full")   1 update per epoch
    mini-batch (B)   ceil(N / B) updates per epoch (the last, smaller batch is kept)
    stochastic (1)   N updates per epoch
Every epoch visits every sample exactly once. The order is a fresh permutation per epoch drawn from a generator
seeded once per run; it depends only on (seed, N), never on the optimizer or the batch size, so runs that share a
seed see the data in the same order and comparisons between them are paired.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

FULL = "full"


def parse_batch_size(value) -> int | str:
    """``"full"`` or a positive integer (``1`` is stochastic); raises ValueError otherwise."""
    if isinstance(value, str) and value.strip().lower() == FULL:
        return FULL
    try:
        size = int(str(value).strip())
    except ValueError:
        raise ValueError(f"batch size must be 'full' or a positive integer, got {value!r}") from None
    if size < 1 or str(size) != str(value).strip():
        raise ValueError(f"batch size must be 'full' or a positive integer, got {value!r}")
    return size


def resolve(batch_size, n: int) -> int:
    """The number of samples per update for a training set of n samples."""
    return n if parse_batch_size(batch_size) == FULL else min(int(batch_size), n)


def steps_per_epoch(n: int, batch_size) -> int:
    return math.ceil(n / resolve(batch_size, n))


class BatchIterator:
    """Yields index arrays, one per update, epoch after epoch: ``for idx in it.epoch(): ...``."""

    def __init__(self, n: int, batch_size, seed: int | None = 0, shuffle: bool = True):
        self.n, self.size, self.shuffle = n, resolve(batch_size, n), shuffle
        self._rng = np.random.default_rng(seed)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.size)

    def order(self) -> np.ndarray | None:
        """The next epoch's sample order: a fresh permutation when shuffling over several batches (one draw per
        epoch), None for the samples' own order (one batch sums over all samples, whatever their order)."""
        if self.size >= self.n or not self.shuffle:
            return None
        return self._rng.permutation(self.n)

    def epoch(self) -> Iterator[np.ndarray | slice]:
        """Index arrays (or slices, which index without copying) covering 0..n-1 once each."""
        if self.size >= self.n:
            yield slice(0, self.n)
            return
        order = self.order()
        for start in range(0, self.n, self.size):
            yield slice(start, start + self.size) if order is None else order[start:start + self.size]
