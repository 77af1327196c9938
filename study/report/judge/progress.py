"""How fast the runs get there, from the equal-epochs evaluations.

Each dataset gets the verdict's target (``scoring.targets``). A run's epochs to target is the first checkpoint
(every epoch end and a log grid inside epochs) whose validation loss is at or below it, in epochs (fractional
inside an epoch), inf if none within its E_d epochs; its updates to target is the update count there
(``scoring.run_scores``). A cell's value is the median over its runs (tuning runs and seeds), so a cell that misses
the target on most runs counts as never.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CELL = ["dataset", "optimizer", "batch_size", "track"]
RUN = ["run_id"]  # a run's curve: one evaluation run's checkpoints


def epoch_ends(curves: pd.DataFrame, run_ids) -> pd.DataFrame:
    """The epoch-end checkpoints of the given runs (the equal-epochs evaluations): what per-epoch figures and
    batch modes read (training loss and gradient norms are recorded there only)."""
    epoch = curves["epoch"].astype(float)
    keep = curves["run_id"].isin(set(run_ids)) & np.isclose(epoch, np.round(epoch))
    return curves[keep].assign(epoch=np.round(epoch[keep]).astype(int))


def cells_to_target(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: median epochs and updates to the validation target over its runs, and the share of runs that
    reached it."""
    grouped = runs.groupby(CELL, sort=False)
    cells = pd.DataFrame({"epochs_to_target": grouped["val_epochs_to_target"].median(),
                          "updates_to_target": grouped["val_updates_to_target"].median()})
    cells["reached_share"] = grouped["val_epochs_to_target"].apply(lambda e: float(np.isfinite(e).mean()))
    return cells.reset_index()


def median_curves(curves: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
    """Per cell and epoch: median, 25th and 75th percentile of ``metric`` over its runs (NaN after a run stopped
    is left out; an epoch that no run reached is dropped)."""
    grouped = curves.groupby(CELL + ["epoch"], sort=False)[metric]
    out = pd.DataFrame({"median": grouped.median(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75)})
    return out.dropna(subset=["median"]).reset_index()
