"""How fast the runs get there, computed from the per-epoch curves of the evaluation runs.

Each dataset gets the verdict's target (``scoring.targets``): ``factor`` x its best tuned final validation loss
(the lowest, over the optimizer x batch-size cells, of the median over seeds; a diverged run scores the untrained
network's loss). A run's epochs to target is the first epoch whose validation loss is
at or below the target (inf if none); its updates to target is the cumulative update count at that epoch. A cell's
value is the median over seeds, so a cell that misses the target on most seeds counts as never.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CELL = ["dataset", "optimizer", "batch_size", "track"]
RUN = CELL + ["seed"]


def runs_to_target(curves: pd.DataFrame, target: pd.Series) -> pd.DataFrame:
    """Per run: epochs_to_target and updates_to_target (inf when the target is never reached)."""
    runs = curves[RUN].drop_duplicates()
    hits = curves[curves["val_loss"].astype(float) <= curves["dataset"].map(target)]
    first = hits.sort_values("epoch").groupby(RUN, sort=False).head(1)[RUN + ["epoch", "updates"]]
    out = runs.merge(first, on=RUN, how="left").rename(columns={"epoch": "epochs_to_target",
                                                                "updates": "updates_to_target"})
    out[["epochs_to_target", "updates_to_target"]] = out[["epochs_to_target", "updates_to_target"]].astype(
        float).fillna(np.inf)
    return out


def cells_to_target(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per cell: median epochs and updates to target over seeds, and the share of seeds that reached it."""
    grouped = per_run.groupby(CELL, sort=False)
    cells = grouped[["epochs_to_target", "updates_to_target"]].median()
    cells["reached_share"] = grouped["epochs_to_target"].apply(lambda e: float(np.isfinite(e).mean()))
    return cells.reset_index()


def median_curves(curves: pd.DataFrame, metric: str = "val_loss") -> pd.DataFrame:
    """Per cell and epoch: median, 25th and 75th percentile of ``metric`` over seeds (NaN after a run stopped
    is left out; an epoch that no seed reached is dropped)."""
    grouped = curves.groupby(CELL + ["epoch"], sort=False)[metric]
    out = pd.DataFrame({"median": grouped.median(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75)})
    return out.dropna(subset=["median"]).reset_index()
