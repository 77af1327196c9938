"""How stable the answer is: the verdict's choices recomputed on bootstrap resamples of the datasets and of the
evaluation seeds within each dataset (Sivaprasad et al. 2020 report the probability that each optimizer ranks
first).

One sweep's details move with floating-point noise between machines; a statement that holds in most resamples of
its own datasets and seeds is one a reader can lean on. In every resample, exactly as in the report: each
optimizer's batch size by the best mean rank of its validation score, the recommended optimizer by the best mean
rank of validation score at those batch sizes; and, for reference, the optimizer that ranks first on test among the
chosen cells. The resamples are drawn from the report's seed, so a rebuild gives the same numbers.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from study.report.judge.answer import Answer


def _cube(runs: pd.DataFrame, column: str, track: str, datasets, optimizers, batches, seeds) -> np.ndarray:
    """datasets x optimizers x batch sizes x seeds of one run score (NaN where a run is missing)."""
    rows = runs[runs["track"] == track]
    index = pd.MultiIndex.from_product([datasets, optimizers, batches, seeds],
                                       names=["dataset", "optimizer", "batch_size", "seed"])
    values = rows.set_index(["dataset", "optimizer", "batch_size", "seed"])[column].astype(float)
    values = values[~values.index.duplicated()]
    return values.reindex(index).to_numpy().reshape(len(datasets), len(optimizers), len(batches), len(seeds))


def _choices(val: np.ndarray, test: np.ndarray, cost: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For resampled cubes (R, D, O, B, S): each optimizer's chosen batch (R, O), the recommended optimizer (R,)
    and the test-first optimizer among the chosen cells (R,)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell with no seed left: nan, ranked last below
        reduce = np.nanmedian if cost else np.nanmean
        v, t = reduce(val, axis=-1), reduce(test, axis=-1)  # (R, D, O, B)
    v = np.where(np.isnan(v), np.inf, v)
    t = np.where(np.isnan(t), np.inf, t)
    batch_ranks = scipy_stats.rankdata(v, axis=3, method="average").mean(axis=1)  # (R, O, B)
    chosen = np.argmin(batch_ranks, axis=2)  # ties: the first in the sweep's order
    pick = chosen[:, None, :, None]
    v_at = np.take_along_axis(v, pick, axis=3)[..., 0]  # (R, D, O)
    t_at = np.take_along_axis(t, pick, axis=3)[..., 0]
    recommended = np.argmin(scipy_stats.rankdata(v_at, axis=2, method="average").mean(axis=1), axis=1)
    test_first = np.argmin(scipy_stats.rankdata(t_at, axis=2, method="average").mean(axis=1), axis=1)
    return chosen, recommended, test_first


def stability(a: Answer, runs: pd.DataFrame, datasets, optimizers, batches, resamples: int, seed: int) -> tuple[
        pd.DataFrame, float]:
    """P(best) per optimizer (recommended, and first on test) and, for the recommended optimizer, per batch size;
    and the share of resamples that give the same headline (the same optimizer at the same batch size)."""
    columns = ["budget", "track", "kind", "optimizer", "batch_size", "p_best", "p_best_test"]
    if a.recommended is None or not a.measured:
        return pd.DataFrame(columns=columns), float("nan")
    seeds = sorted(runs["seed"].unique())
    val = _cube(runs, f"val_{a.budget}", a.track, datasets, optimizers, batches, seeds)
    test = _cube(runs, f"test_{a.budget}", a.track, datasets, optimizers, batches, seeds)
    rng = np.random.default_rng(seed)
    n_d, n_s = len(datasets), len(seeds)
    chosen, recommended, test_first = [], [], []
    for start in range(0, resamples, 250):  # in chunks: a few hundred resamples fit in memory at once
        r = min(250, resamples - start)
        d = rng.integers(0, n_d, (r, n_d))
        s = rng.integers(0, n_s, (r, n_d, n_s))
        gather = lambda cube: np.take_along_axis(cube[d], s[:, :, None, None, :], axis=4)  # noqa: E731
        c, rec, first = _choices(gather(val), gather(test), a.budget != "epochs")
        chosen.append(c)
        recommended.append(rec)
        test_first.append(first)
    chosen, recommended, test_first = (np.concatenate(x) for x in (chosen, recommended, test_first))
    rows = [{"budget": a.budget, "track": a.track, "kind": "optimizer", "optimizer": o, "batch_size": "",
             "p_best": float(np.mean(recommended == i)), "p_best_test": float(np.mean(test_first == i))}
            for i, o in enumerate(optimizers)]
    o_star = optimizers.index(a.recommended)
    rows += [{"budget": a.budget, "track": a.track, "kind": "batch_size", "optimizer": a.recommended,
              "batch_size": b, "p_best": float(np.mean(chosen[:, o_star] == j)), "p_best_test": float("nan")}
             for j, b in enumerate(batches)]
    same = float(np.mean((recommended == o_star) & (chosen[:, o_star] == batches.index(a.batch))))
    return pd.DataFrame(rows, columns=columns), same
