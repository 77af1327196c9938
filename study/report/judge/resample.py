"""Bootstrap resamples of a sweep, and everything the verdict computes from data recomputed inside each one.

A resample draws the datasets with replacement; within each drawn dataset, the evaluation seeds with replacement
(the same draw for every cell: comparisons stay paired) and, within each cell, its tuning runs with replacement
(the default track has none to draw). From the resampled runs alone it recomputes, as ``scoring`` and ``tolerance``
do for the sweep: each dataset's target (factor x the best full-batch cell's median validation loss at E_d), its
loss unit (the paired SD of validation loss), every cell's score at every budget (costs to the resample's own
target, at checkpoint resolution, censored at the caps), and the choices (each optimizer's batch size, the
recommended optimizer) exactly as ``answer`` makes them on validation.

Runs are held as index cubes (datasets x optimizers x batch sizes x tuning runs x seeds) into each budget's runs,
so a chunk of resamples is gathered at once.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from study.report.judge import checkpoints, tolerance
from study.report.judge.scoring import RUN, Scores, censor, reference_batch


@dataclass(frozen=True)
class Layout:
    datasets: tuple
    optimizers: tuple
    batches: tuple
    tuning_runs: tuple  # the tuned track's
    seeds: tuple

    def cube(self, frame: pd.DataFrame, track: str) -> np.ndarray:
        """(D, O, B, U, S) row positions of ``frame``'s runs of a track (-1 where a run is missing); U is 1 on
        the default track."""
        runs = self.tuning_runs if track == "tuned" else (-1,)
        rows = frame[frame["track"] == track]
        cube = np.full((len(self.datasets), len(self.optimizers), len(self.batches), len(runs), len(self.seeds)), -1)
        axes = [pd.Index(v).get_indexer(rows[k]) for v, k in ((self.datasets, "dataset"),
                                                                (self.optimizers, "optimizer"),
                                                                (self.batches, "batch_size"), (runs, "tuning_run"),
                                                                (self.seeds, "seed"))]
        inside = np.all([a >= 0 for a in axes], axis=0)
        cube[tuple(a[inside] for a in axes)] = rows.index.to_numpy()[inside]
        return cube


@dataclass(frozen=True)
class Draws:
    datasets: np.ndarray  # (R, D)
    seeds: np.ndarray  # (R, D, S)
    runs: np.ndarray  # (R, D, O, B, U)

    def gather(self, cube: np.ndarray) -> np.ndarray:
        """(R, D, O, B, U', S) run positions of the resampled slots (U' = 1 on the default track)."""
        idx = cube[self.datasets]
        if idx.shape[4] > 1:
            idx = np.take_along_axis(idx, self.runs[..., None].repeat(idx.shape[5], axis=5), axis=4)
        return np.take_along_axis(idx, self.seeds[:, :, None, None, None, :], axis=5)


def draw(rng: np.random.Generator, r: int, layout: Layout) -> Draws:
    d, s, u = len(layout.datasets), len(layout.seeds), len(layout.tuning_runs)
    o, b = len(layout.optimizers), len(layout.batches)
    return Draws(rng.integers(0, d, (r, d)), rng.integers(0, s, (r, d, s)), rng.integers(0, u, (r, d, o, b, u)))


def values(per_run: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.where(idx >= 0, per_run[np.maximum(idx, 0)], np.nan)


class Evidence:
    """What the bootstrap reads of one sweep, arranged once: each budget's runs as index cubes per track, the
    per-run losses at E_d, and each cost budget's record lows, caps and cost per update."""

    def __init__(self, scores: Scores, datasets, optimizers, batches, factor: float):
        epochs = scores.budget_runs["epochs"].runs
        tuned = scores.runs[scores.runs["track"] == "tuned"]
        self.layout = Layout(tuple(datasets), tuple(optimizers), tuple(batches),
                             tuple(sorted(tuned["tuning_run"].unique())) or (0,),
                             tuple(sorted(scores.runs["seed"].unique())))
        self.factor, self.reference = factor, list(batches).index(reference_batch(batches))
        self.tracks = tuple(t for t in ("tuned", "default") if (epochs["track"] == t).any())
        scored = epochs[RUN].merge(scores.runs[RUN + ["val_epochs", "test_epochs"]], on=RUN, how="left")
        self.epochs = {"val": scored["val_epochs"].to_numpy(float), "test": scored["test_epochs"].to_numpy(float)}
        self.cubes = {(b, t): self.layout.cube(r.runs, t) for b, r in scores.budget_runs.items() for t in self.tracks}
        self.costs = {b: r for b, r in scores.budget_runs.items() if b != "epochs"}
        self.rows = {b: [np.flatnonzero(r.runs["dataset"].to_numpy() == d) for d in datasets]
                     for b, r in self.costs.items()}

    def epochs_cube(self, draws: Draws, split: str, track: str) -> np.ndarray:
        """(R, D, O, B, U, S) losses at E_d of the resampled runs."""
        return values(self.epochs[split], draws.gather(self.cubes[("epochs", track)]))

    def targets(self, val_tuned: np.ndarray) -> np.ndarray:
        """(R, D): factor x the lowest, over the optimizers at the reference batch size, of the median of their
        resampled runs' validation loss at E_d."""
        full = val_tuned[:, :, :, self.reference]  # (R, D, O, U, S)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(full.reshape(*full.shape[:3], -1), axis=3)
            return self.factor * np.nanmin(median, axis=2)

    @staticmethod
    def unit(val_tuned: np.ndarray) -> np.ndarray:
        """(R, D): the paired SD of validation loss over the resampled seeds (each cell's mean over its
        resampled tuning runs), the median over pairs of cells (``tolerance.paired_sd``)."""
        per_seed = np.nanmean(val_tuned, axis=4)  # (R, D, O, B, S)
        cells = per_seed.reshape(*per_seed.shape[:2], -1, per_seed.shape[-1])
        unit = tolerance.pair_sd(cells)
        return np.where(unit > 0, unit, np.nan)

    def cost_cubes(self, draws: Draws, budget: str, targets: np.ndarray) -> dict:
        """(split, track) -> (R, D, O, B, U, S) costs of the resampled runs to their resample's own target,
        censored at the cap (inf)."""
        r = self.costs[budget]
        per_update, cap = r.runs["per_update"].to_numpy(float), r.runs["cap"].to_numpy(float)
        diverged = r.runs["diverged"].to_numpy(bool)
        idx = {t: draws.gather(self.cubes[(budget, t)]) for t in self.tracks}
        out = {(s, t): np.full(idx[t].shape, np.nan) for s in ("val", "test") for t in self.tracks}
        local = np.full(len(r.runs), -1)
        for d, rows in enumerate(self.rows[budget]):
            mask = draws.datasets == d
            if not mask.any() or not len(rows):
                continue
            local[rows] = np.arange(len(rows))
            column = np.arange(int(mask.sum()))[:, None, None, None, None]
            for split in ("val", "test"):
                rec = getattr(r, split)
                reach = checkpoints.first_reach_many(rec, rows, targets[mask])
                cost = censor(reach * per_update[rows][:, None], cap[rows][:, None])
                cost[~(rec.recorded[rows] | diverged[rows])] = np.nan  # no such curve: not measured
                for t in self.tracks:
                    at = local[np.maximum(idx[t][mask], 0)]
                    out[(split, t)][mask] = np.where((idx[t][mask] >= 0) & (at >= 0), cost[np.maximum(at, 0),
                                                                                            column], np.nan)
            local[rows] = -1
        return out


def cell_score(cube: np.ndarray, cost: bool) -> np.ndarray:
    """(R, D, O, B): each resampled cell's score, pooling its runs: the median for costs, the mean for losses."""
    pooled = cube.reshape(*cube.shape[:4], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if cost:
            return np.median(pooled, axis=4) if not np.isnan(pooled).any() else np.nanmedian(pooled, axis=4)
        return np.nanmean(pooled, axis=4)


def choices(val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``answer.choose`` and ``answer.validation_pick`` on (R, D, O, B) VALIDATION scores: each optimizer's batch
    size (R, O) and the recommended optimizer (R,); ties to the first in the sweep's order."""
    v = np.where(np.isnan(val), np.inf, val)
    chosen = np.argmin(scipy_stats.rankdata(v, axis=3, method="average").mean(axis=1), axis=2)
    at = np.take_along_axis(v, chosen[:, None, :, None], axis=3)[..., 0]  # (R, D, O)
    return chosen, first(at)


def first(table: np.ndarray) -> np.ndarray:
    """(R,) the treatment with the best mean rank of (R, D, k) scores (NaN last), ties to the first."""
    t = np.where(np.isnan(table), np.inf, table)
    return np.argmin(scipy_stats.rankdata(t, axis=2, method="average").mean(axis=1), axis=1)
