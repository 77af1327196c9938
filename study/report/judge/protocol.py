"""The protocol as it ran: each dataset's caps and whether its best full-batch cell reaches the target within them,
the hyperparameters chosen for each budget, what each tuning run found, and what validation would pick from one
tuning run alone (how much the answer depends on tuning's randomness)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.report.inputs import BUDGETS, SweepResults, hyperparameter_names
from study.report.judge.answer import choose, score_table, validation_pick
from study.report.judge.scoring import CELL, Scores, cell_scores, reference_batch

SCORED = ("COMPLETE", "DIVERGED")  # a diverged trial counts at its penalty


def budgets(scores: Scores, batches) -> pd.DataFrame:
    """Per dataset and budget: the cap and its unit, the target, the best full-batch cell (tuned, chosen on
    validation) and whether it reaches the target within the cap (the median over its runs of the budget's
    validation cost, or its validation loss at E_d, at or below the target: true by construction, a check)."""
    reference = reference_batch(batches)
    cells = scores.cells[scores.cells["track"] == "tuned"].set_index(["dataset", "optimizer", "batch_size"])
    rows = []
    for cap in scores.caps.itertuples(index=False):
        if cap.dataset not in scores.targets.index:
            continue
        t = scores.targets.loc[cap.dataset]
        key = (cap.dataset, t["optimizer"], reference)
        if cap.budget == "epochs":
            reaches = bool(cells.loc[key, "val_epochs"] <= t["target"]) if key in cells.index else False
        else:
            column = f"val_{cap.budget}"
            reaches = bool(np.isfinite(cells.loc[key, column])) if key in cells.index and column in cells else False
        rows.append({"dataset": cap.dataset, "budget": cap.budget, "cap": cap.cap, "unit": cap.unit,
                     "target": t["target"], "best_full_batch": f"{t['optimizer']}/{reference}",
                     "best_full_batch_val_loss": t["best_val_loss"], "reaches_target": reaches})
    return pd.DataFrame(rows, columns=["dataset", "budget", "cap", "unit", "target", "best_full_batch",
                                       "best_full_batch_val_loss", "reaches_target"])


def hyper_by_budget(evals: pd.DataFrame) -> pd.DataFrame:
    """The hyperparameters chosen for each budget, per cell and tuning run (tuned track)."""
    names = [h for h in hyperparameter_names() if h in evals]
    keys = ["budget", "dataset", "optimizer", "batch_size", "tuning_run"]
    tuned = evals[evals["track"] == "tuned"].drop_duplicates(keys)
    order = {b: i for i, b in enumerate(BUDGETS)}
    tuned = tuned.assign(_b=tuned["budget"].map(order)).sort_values(["_b", "dataset", "optimizer", "batch_size",
                                                                     "tuning_run"], kind="stable")
    return tuned[keys + names].reset_index(drop=True)


def tuning_runs(results: SweepResults, scores: Scores) -> pd.DataFrame:
    """Per cell and tuning run: the best validation loss its trials reached (its TPE study; run 0 with the random
    arm, which shares its split), the hyperparameters it chose for equal epochs, and the mean validation and test
    loss at E_d of their evaluations."""
    trials = results.trials
    scored = trials[trials["state"].isin(SCORED)]
    best = scored.groupby(["dataset", "optimizer", "batch_size", "tuning_run"], sort=False)["value"].min()
    chosen = hyper_by_budget(results.evals)
    chosen = chosen[chosen["budget"] == "epochs"].drop(columns="budget")
    runs = scores.runs[scores.runs["track"] == "tuned"].groupby(
        ["dataset", "optimizer", "batch_size", "tuning_run"], sort=False)[["val_epochs", "test_epochs"]].mean()
    out = chosen.merge(best.rename("best_val_loss").reset_index(), on=["dataset", "optimizer", "batch_size",
                                                                       "tuning_run"], how="left")
    out = out.merge(runs.rename(columns={"val_epochs": "eval_val_loss", "test_epochs": "eval_test_loss"})
                    .reset_index(), on=["dataset", "optimizer", "batch_size", "tuning_run"], how="left")
    first = ["dataset", "optimizer", "batch_size", "tuning_run", "best_val_loss"]
    return out[first + [c for c in out.columns if c not in first]]


def picks_per_run(scores: Scores, datasets, optimizers, batches) -> pd.DataFrame:
    """Per budget and tuning run: the optimizer and batch size validation picks from that tuning run's
    evaluations alone (every choice as the verdict makes it, on validation)."""
    tuned = scores.runs[scores.runs["track"] == "tuned"]
    rows = []
    for run in sorted(tuned["tuning_run"].unique()):
        cells = cell_scores(tuned[tuned["tuning_run"] == run])
        for budget in BUDGETS:
            column = f"val_{budget}"
            if column not in cells or cells[column].isna().all():
                continue
            val = score_table(cells, column, "tuned", datasets)
            chosen, _ = choose(val, optimizers, batches)
            pick = validation_pick(pd.DataFrame({o: val[(o, b)] for o, b in chosen.items()})) if chosen else None
            rows.append({"budget": budget, "tuning_run": int(run), "optimizer": pick,
                         "batch_size": chosen.get(pick)})
    return pd.DataFrame(rows, columns=["budget", "tuning_run", "optimizer", "batch_size"])


CELL_KEYS = [c for c in CELL if c != "track"]
