"""What every evaluation run scores at each budget a practitioner pays in, on validation and on test.

Every choice the report makes is made on the validation split; the test split only scores what was chosen. So each
run gets two scores per budget:

- ``epochs`` (equal samples processed, the lecture's "one epoch = one pass"): the final loss after the dataset's
  epochs. A run that diverged scores the untrained network's loss on that split (the evaluation records both), no
  better than not training at all and never another cell's or track's result.
- ``updates``: parameter updates until the loss first reaches the dataset's target; inf when it never does.
- ``seconds``: epochs until the target times the cell's ``seconds_per_epoch`` (one network trained alone on the
  sweep's machine: machine-dependent). inf when never.

A dataset's target is ``factor`` x its best tuned final validation loss (the best cell, median over seeds): a
threshold set on validation and applied to both curves, which are samples of the same distribution. A cell's score
is the mean over seeds for losses and the median over seeds for costs (so a cell that misses the target on most
seeds is never there). Lower is better everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report.inputs import TRACKS, Grid, SweepResults
from study.report.judge import stats
from study.schema.report import Report, Statistics

BUDGETS = ("epochs", "updates", "seconds")
BUDGET_NAMES = {"epochs": "equal epochs (samples processed)", "updates": "equal updates (to the target)",
                "seconds": "equal wall time (to the target, this machine)"}
SPLITS = ("val", "test")
CELL = ["dataset", "optimizer", "batch_size", "track"]
RUN = CELL + ["seed"]


def targets(curves: pd.DataFrame, evals: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Per dataset: the best tuned cell by median final validation loss over seeds, and target = factor x it."""
    final = _final_validation(curves, evals)
    tuned = final[final["track"] == "tuned"]
    cells = tuned.groupby(CELL, sort=False)["val_epochs"].median().reset_index()
    best = cells.sort_values(["dataset", "val_epochs", "optimizer", "batch_size"]).groupby("dataset").head(1)
    best = best.rename(columns={"val_epochs": "best_final_val_loss"}).drop(columns="track")
    best["target"] = factor * best["best_final_val_loss"]
    return best.set_index("dataset")


def _final_validation(curves: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """Per run: the final validation loss, or the untrained network's for a run that diverged."""
    finite = curves[np.isfinite(curves["val_loss"].astype(float))]
    last = finite.sort_values("epoch").groupby(RUN, sort=False).tail(1)[RUN + ["val_loss"]]
    out = evals[RUN + ["diverged", "initial_val_loss"]].merge(last, on=RUN, how="left")
    failed = out["diverged"].astype(float) > 0
    out["val_epochs"] = np.where(failed, out["initial_val_loss"].astype(float), out["val_loss"].astype(float))
    return out[RUN + ["val_epochs"]]


def _first_reach(curves: pd.DataFrame, column: str, target: pd.Series) -> pd.DataFrame:
    """Per run: updates and epochs at the first epoch whose ``column`` is at or below the dataset's target."""
    hit = curves[curves[column].astype(float) <= curves["dataset"].map(target)]
    first = hit.sort_values("epoch").groupby(RUN, sort=False).head(1)
    return first[RUN + ["epoch", "updates"]]


def run_scores(evals: pd.DataFrame, curves: pd.DataFrame, cells: pd.DataFrame, factor: float) -> pd.DataFrame:
    """One row per evaluation run: its keys, whether it diverged, its test accuracy, and ``<split>_<budget>`` for
    every split and budget (NaN where the sweep did not record what it needs: a test curve, a cell's cost)."""
    target = targets(curves, evals, factor)["target"]
    out = evals[RUN + ["diverged", "test_loss", "test_accuracy"]].copy()
    # the final network's loss on its training set (what it fitted: optimisation apart from generalisation)
    out["train_final"] = evals["final_train_loss"].astype(float) if "final_train_loss" in evals else np.nan
    out["diverged"] = out["diverged"].astype(float) > 0
    out = out.merge(_final_validation(curves, evals), on=RUN, how="left")
    out["test_epochs"] = out.pop("test_loss").astype(float)  # a diverged run's is the untrained network's already
    cost = cells.set_index(["dataset", "optimizer", "batch_size"])["seconds_per_epoch"] if len(cells) else None
    per_epoch = (out.set_index(["dataset", "optimizer", "batch_size"]).index.map(cost).to_numpy(float)
                 if cost is not None else np.full(len(out), np.nan))
    for split in SPLITS:
        column = f"{split}_loss"
        recorded = curves.groupby(RUN, sort=False)[column].apply(lambda v: bool(np.isfinite(v).any()))
        first = _first_reach(curves, column, target)
        merged = out[RUN].merge(first, on=RUN, how="left")
        has_curve = out[RUN].merge(recorded.rename("has").reset_index(), on=RUN, how="left")["has"].fillna(False)
        epochs = np.where(has_curve, merged["epoch"].astype(float).fillna(np.inf), np.nan)
        out[f"{split}_epochs_to_target"] = epochs
        out[f"{split}_updates"] = np.where(has_curve, merged["updates"].astype(float).fillna(np.inf), np.nan)
        out[f"{split}_seconds"] = epochs * per_epoch
    return out


def cell_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: mean over seeds of the losses and the test accuracy, median over seeds of the costs, the
    share of its runs that diverged, and how many seeds."""
    grouped = runs.groupby(CELL, sort=False)
    out = pd.DataFrame({"seeds": grouped.size(), "diverged_share": grouped["diverged"].mean()})
    for split in SPLITS:
        out[f"{split}_epochs"] = grouped[f"{split}_epochs"].mean()
        for cost in ("epochs_to_target", "updates", "seconds"):
            out[f"{split}_{cost}"] = grouped[f"{split}_{cost}"].median()
    out["test_accuracy"] = grouped["test_accuracy"].mean()
    out["train_final"] = grouped["train_final"].mean()
    return out.reset_index()


def loss_spread(runs: pd.DataFrame) -> pd.Series:
    """Per dataset: the seed-to-seed spread of the test loss, the median over the dataset's tuned cells of the
    standard deviation over seeds. The unit of the loss ROPE and of every loss difference that is compared across
    datasets (conf/report.yaml): a difference reads as "this many times the noise of one cell"."""
    tuned = runs[runs["track"] == "tuned"]
    per_cell = tuned.groupby(CELL, sort=False)["test_epochs"].std(ddof=1)
    spread = per_cell.groupby(level="dataset", sort=False).median()
    return spread.where(spread > 0, np.nan)


def measured(cells: pd.DataFrame, budget: str) -> bool:
    """Whether the sweep recorded what a budget needs (a test curve; a cost per epoch for seconds)."""
    return bool(cells[f"test_{budget}"].astype(float).notna().any()) if len(cells) else False


def cell_summary(runs: pd.DataFrame, evals: pd.DataFrame, st: Statistics, grid: Grid) -> pd.DataFrame:
    """Per cell: mean test loss and accuracy over seeds with bootstrap intervals, seeds, diverged runs, seconds."""
    keys = ["dataset", "optimizer", "batch_size", "track"]
    scored = runs.merge(evals[keys + ["seed", "seconds"]], on=keys + ["seed"], how="left")
    groups = list(scored.groupby(keys, sort=False))
    width = max(len(g) for _, g in groups)

    def matrix(column):
        m = np.full((len(groups), width), np.nan)
        for i, (_, g) in enumerate(groups):
            m[i, :len(g)] = g.sort_values("seed")[column].to_numpy(float)
        return m

    out = pd.DataFrame([dict(zip(keys, key)) for key, _ in groups])
    for column, name in (("test_epochs", "test_loss"), ("test_accuracy", "test_accuracy")):
        values = np.where(np.isfinite(matrix(column)), matrix(column), np.nan)
        counts = np.sum(np.isfinite(values), axis=1)
        out[f"{name}_mean"] = np.where(counts > 0, np.nansum(values, axis=1) / np.maximum(counts, 1), np.nan)
        low, high = stats.bootstrap_mean_ci(values, st.confidence, st.bootstrap_resamples, st.seed)
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    out["seeds"] = [len(g) for _, g in groups]
    out["failed"] = [int(g["diverged"].sum()) for _, g in groups]
    out["seconds_median"] = [float(g["seconds"].median()) for _, g in groups]
    rank = {"dataset": grid.datasets, "optimizer": grid.optimizers, "batch_size": grid.batches, "track": TRACKS}
    order = [out[k].map({v: i for i, v in enumerate(rank[k])}) for k in keys]
    out = out.assign(_a=order[0], _b=order[1], _c=order[2], _d=order[3])
    return out.sort_values(["_d", "_a", "_b", "_c"]).drop(columns=["_a", "_b", "_c", "_d"]).reset_index(drop=True)


@dataclass(frozen=True)
class Scores:
    """Every evaluation run scored, and its cells."""
    runs: pd.DataFrame  # per evaluation run: every split's score at every budget (``run_scores``)
    cells: pd.DataFrame  # per cell: the same over seeds (``cell_scores``)
    spread: pd.Series  # per dataset: the seed-to-seed spread of test loss (the loss ROPE's unit)
    summary: pd.DataFrame  # per cell: test loss and accuracy, mean and bootstrap interval over seeds


def score(results: SweepResults, grid: Grid, report: Report) -> Scores:
    runs = run_scores(results.evals, results.curves, results.cells, report.target.factor)
    return Scores(runs, cell_scores(runs), loss_spread(runs), cell_summary(runs, results.evals, report.statistics,
                                                                          grid))
