"""What pruning and TPE buy, measured against the random arm (issue 18.4).

Per cell, each arm's best trial is the one with the lowest validation loss (a diverged trial at its penalty; a
pruned one has no final value): per TPE tuning run, and once for the unpruned random-search arm, which shares run
0's split and has as many trials. Both are then judged on the test loss every trial recorded (recorded for this,
never read by a choice). The gain = (random's test loss - TPE's, the mean over its tuning runs) in the dataset's
loss units: > 0 when TPE with the median pruner found better hyperparameters than as many random trials. Per
optimizer, the median over datasets (each the mean over its batch sizes) with a bootstrap interval, the Wilcoxon
signed-rank test with Holm's correction over the optimizers, and the Bayesian signed-rank test with the declared
tolerance; and one Iman-Davenport test of whether the gain differs between optimizers (does the pruner, which
stops slow starters, favour fast ones?). Exploratory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report.judge import stats
from study.schema.report import Report

SCORED = ("COMPLETE", "DIVERGED")
CELL = ["dataset", "optimizer", "batch_size"]


@dataclass(frozen=True)
class Pruning:
    cells: pd.DataFrame  # per cell: each arm's best trial (validation) and its test loss, the gain in loss units
    optimizers: pd.DataFrame  # per optimizer: median gain, interval, tests, share of cells TPE did better
    omnibus: stats.Omnibus  # does the gain differ between optimizers (datasets x optimizers)
    datasets: int

    @property
    def measured(self) -> bool:
        return bool(len(self.optimizers))


def best_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Per cell, arm and tuning run: the trial with the lowest validation loss (ties: the first asked) and its
    test loss."""
    scored = trials[trials["state"].isin(SCORED) & np.isfinite(trials["value"].astype(float))]
    ordered = scored.sort_values(CELL + ["arm", "tuning_run", "value", "number"], kind="stable")
    return ordered.groupby(CELL + ["arm", "tuning_run"], sort=False).head(1)[
        CELL + ["arm", "tuning_run", "number", "value", "test_loss"]]


def tpe_against_random(trials: pd.DataFrame, unit: pd.Series, datasets, optimizers, report: Report) -> Pruning:
    columns = ["optimizer", "median_gain", "low", "high", "wilcoxon_p", "holm_p", "p_tpe_better", "p_equivalent",
               "p_random_better", "tpe_better_share", "cells", "datasets"]
    empty = Pruning(pd.DataFrame(), pd.DataFrame(columns=columns), stats.Omnibus("none", math.nan, 1.0), 0)
    if trials.empty or not (trials["arm"] == "random").any():
        return empty
    best = best_trials(trials)
    tpe = best[best["arm"] == "tpe"].groupby(CELL, sort=False).agg(tpe_val=("value", "mean"),
                                                                   tpe_test=("test_loss", "mean"),
                                                                   tpe_runs=("value", "size"))
    random = best[best["arm"] == "random"].set_index(CELL)[["value", "test_loss"]].rename(
        columns={"value": "random_val", "test_loss": "random_test"})
    cells = tpe.join(random, how="inner").reset_index()
    cells["gain"] = (cells["random_test"] - cells["tpe_test"]) / cells["dataset"].map(unit)
    cells = cells[np.isfinite(cells["gain"])]
    if cells.empty:
        return empty
    per_dataset = cells.pivot_table(index="dataset", columns="optimizer", values="gain", aggfunc="mean")
    per_dataset = per_dataset.reindex(index=[d for d in datasets if d in per_dataset.index],
                                      columns=[o for o in optimizers if o in per_dataset.columns])
    st, rope = report.statistics, report.tolerance.on_scale("epochs")
    rows = []
    for optimizer in per_dataset.columns:
        d = per_dataset[optimizer].dropna().to_numpy(float)
        low, high = stats.bootstrap_median_ci(d, st.confidence, st.bootstrap_resamples, st.seed)
        random_better, same, tpe_better = stats.bayesian_signed_rank(d, rope, st.bayes_samples, st.seed) \
            if len(d) else (math.nan,) * 3
        mine = cells[cells["optimizer"] == optimizer]
        rows.append({"optimizer": optimizer, "median_gain": float(np.median(d)) if len(d) else math.nan,
                     "low": low, "high": high, "wilcoxon_p": stats.wilcoxon_signed_rank(d)[1],
                     "p_tpe_better": tpe_better, "p_equivalent": same, "p_random_better": random_better,
                     "tpe_better_share": float((mine["gain"] > 0).mean()), "cells": len(mine), "datasets": len(d)})
    table = pd.DataFrame(rows)
    table.insert(5, "holm_p", stats.holm(table["wilcoxon_p"].to_numpy()))
    complete = per_dataset.dropna()
    return Pruning(cells, table[columns], stats.iman_davenport(-complete), len(complete))
