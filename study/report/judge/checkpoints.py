"""Cost to a target at checkpoint resolution: the first checkpoint at or below it, for one target or thousands.

A run's curve is recorded at checkpoints (every epoch end, and a log grid of update counts inside epochs). The
first checkpoint whose loss is at or below a target t is always a *record low* of the curve (lower than every
checkpoint before it: all of those are above t), so a run is kept as its record lows, in order, and the update
count at which each was first seen. For any target, the cost is the update count of the first record at or below
it: a step function of the target, read here for one target per run (the report's) or for a whole set of targets
per run at once (the bootstrap recomputes every dataset's target in every resample).

A run that diverged never reaches a target (it has no records); a NaN checkpoint is not a value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Records:
    """The record lows of one curve column of many runs, flat: run i's are ``values[start[i]:start[i + 1]]``
    (falling) first seen at ``updates[...]`` (rising)."""
    run_ids: np.ndarray
    start: np.ndarray
    values: np.ndarray
    updates: np.ndarray
    recorded: np.ndarray  # per run: whether its curve has any finite value at all (else nothing was measured)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.start)


class RunIndex:
    """The runs of a curves table, numbered once (run ids are text: matched a million times, they cost seconds)."""

    def __init__(self, curves: pd.DataFrame):
        self.codes, self.ids = pd.factorize(curves["run_id"])
        self.curves = curves

    def positions(self, run_ids) -> np.ndarray:
        """Per curve row, the position of its run among ``run_ids`` (-1 for a run not among them)."""
        where = np.full(len(self.ids) + 1, -1)
        found = pd.Index(self.ids).get_indexer(pd.Index(run_ids))
        where[found[found >= 0]] = np.flatnonzero(found >= 0)
        return where[self.codes]


def records(index: RunIndex, column: str, run_ids, never=()) -> Records:
    """The record lows of ``column`` for each of ``run_ids`` (in that order); the runs in ``never`` (diverged)
    get none."""
    run_ids = np.asarray(run_ids, dtype=object)
    curves = index.curves
    everyone = index.positions(run_ids)
    position = everyone.copy()
    if len(never):
        position[index.positions(list(never)) >= 0] = -1
    values = curves[column].to_numpy(float)
    finite = np.isfinite(values)
    recorded = np.zeros(len(run_ids), bool)
    recorded[everyone[finite & (everyone >= 0)]] = True
    keep = (position >= 0) & finite
    position, values, updates = position[keep], values[keep], curves["updates"].to_numpy(float)[keep]
    order = np.lexsort((updates, position))
    position, values, updates = position[order], values[order], updates[order]
    first = np.r_[True, position[1:] != position[:-1]] if len(position) else np.zeros(0, bool)
    lowest = pd.Series(values).groupby(position).cummin().to_numpy()
    before = np.r_[np.inf, lowest[:-1]] if len(values) else values
    record = first | (values < before)
    position, values, updates = position[record], values[record], updates[record]
    start = np.searchsorted(position, np.arange(len(run_ids) + 1), side="left")
    return Records(run_ids, start, values, updates, recorded)


def first_reach(rec: Records, targets: np.ndarray) -> np.ndarray:
    """Per run, the updates at the first checkpoint at or below its own target (``targets``: one per run, in
    ``rec.run_ids``' order); inf where it never gets there."""
    targets = np.asarray(targets, float)
    run = np.repeat(np.arange(len(rec.run_ids)), rec.counts)
    above = np.bincount(run, weights=rec.values > targets[run], minlength=len(rec.run_ids)).astype(int)
    out = np.full(len(rec.run_ids), np.inf)
    reached = above < rec.counts
    out[reached] = rec.updates[rec.start[:-1][reached] + above[reached]]
    return out


def first_reach_many(rec: Records, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For the runs ``rows`` (indices into ``rec.run_ids``) and every one of ``targets``: (len(rows),
    len(targets)) updates at the first checkpoint at or below each target, inf where never.

    For sorted targets t_0 <= ... <= t_m-1, a record v lies above t_k exactly for k < #(targets < v); so the
    number of a run's records above each target is a reverse cumulative count of those positions, and the first
    record at or below t_k is that many records in."""
    rows, targets = np.asarray(rows, int), np.asarray(targets, float)
    order = np.argsort(targets, kind="stable")
    counts = rec.counts[rows]
    starts = rec.start[:-1][rows]
    owner = np.repeat(np.arange(len(rows)), counts)
    before = np.cumsum(counts) - counts  # where each run's records begin in the gathered list
    flat = np.arange(int(counts.sum())) - np.repeat(before - starts, counts)
    position = np.searchsorted(targets[order], rec.values[flat], side="left")
    histogram = np.zeros((len(rows), len(targets) + 1), int)
    np.add.at(histogram, (owner, position), 1)
    above = np.cumsum(histogram[:, ::-1], axis=1)[:, ::-1][:, 1:]  # records with position > k
    reached = above < counts[:, None]
    index = np.where(reached, starts[:, None] + above, 0)
    out = np.where(reached, rec.updates[index] if len(rec.updates) else np.inf, np.inf)
    unsorted = np.empty_like(out)
    unsorted[:, order] = out
    return unsorted


def value_at(index: RunIndex, column: str, run_ids, last_epoch) -> np.ndarray:
    """Per run, ``column`` at its last finite checkpoint at or before ``last_epoch`` (per run, in ``run_ids``'
    order): the loss at the epochs cap E_d. NaN where there is none."""
    curves = index.curves
    position = index.positions(run_ids)
    values = curves[column].to_numpy(float)
    limit = np.asarray(last_epoch, float)
    keep = (position >= 0) & np.isfinite(values)
    keep[keep] &= curves["epoch"].to_numpy(float)[keep] <= limit[position[keep]] + 1e-9
    position, values, updates = position[keep], values[keep], curves["updates"].to_numpy(float)[keep]
    order = np.lexsort((updates, position))
    position, values = position[order], values[order]
    last = np.r_[position[1:] != position[:-1], True] if len(position) else np.zeros(0, bool)
    out = np.full(len(run_ids), np.nan)
    out[position[last]] = values[last]
    return out
