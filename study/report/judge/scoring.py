"""What every evaluation run scores at each budget a practitioner pays in, on validation and on test.

Every choice the report makes is made on the validation split; the test split only scores what was chosen. Each
budget is scored on the evaluations of the hyperparameters chosen for it (``SweepResults.evals``' ``budget``), with
one cap per dataset and budget for every cell (``SweepResults.caps``):

- ``epochs`` (equal samples processed): the loss at the dataset's E_d epochs. A run that diverged scores the
  untrained network's loss on that split (the evaluation records both), no better than not training at all.
- ``updates``: the update count at the first checkpoint whose loss is at or below the dataset's target
  (``checkpoints``: every epoch end and a log grid inside epochs), censored at the cap U_d.
- ``seconds``: that update count x the cell's seconds_per_epoch / updates_per_epoch (one network alone on the
  sweep's machine: machine-dependent), censored at the cap T_d.
A censored run (it never reaches the target within the cap, or it diverged: a diverged run never reaches it) scores
inf: ranked last, tied with every other censored run; the tests count it at the cap, and tables show "> cap".

A dataset's target is ``factor`` x the validation loss at E_d of its best full-batch cell (tuned, the median over
its runs, chosen on validation; without a full batch, the batch size with the fewest updates per epoch): applied
to both curves, which are samples of the same distribution. A cell's score pools its runs (every tuning run, every
seed): the mean for losses, the median for costs (so a cell that misses the target on most runs is never there).
Lower is better everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report.inputs import BUDGETS, TRACKS, Grid, SweepResults
from study.report.judge import checkpoints, stats
from study.schema.report import Report, Statistics

BUDGET_NAMES = {"epochs": "equal epochs (samples processed)", "updates": "equal updates (to the target)",
                "seconds": "equal wall time (to the target, this machine)"}
SPLITS = ("val", "test")
CELL = ["dataset", "optimizer", "batch_size", "track"]
RUN = CELL + ["tuning_run", "seed"]  # one slot: a cell's evaluation with one tuning run's choice and one seed


@dataclass(frozen=True)
class BudgetRuns:
    """One budget's evaluation runs and what scoring them needs: ``runs`` (RUN + run_id, diverged, cap, and
    per_update: the cost of one update in the budget's unit), and the record lows of their curves per split."""
    budget: str
    runs: pd.DataFrame
    val: checkpoints.Records
    test: checkpoints.Records

    def costs(self, split: str, targets) -> np.ndarray:
        """Per run, the cost to its target (one per run) in the budget's unit; inf when censored, NaN when the
        sweep recorded no such curve (and the run did not diverge) or no cost per update."""
        rec = getattr(self, split)
        cost = censor(checkpoints.first_reach(rec, targets) * self.runs["per_update"].to_numpy(float),
                      self.runs["cap"].to_numpy(float))
        return np.where(rec.recorded | self.runs["diverged"].to_numpy(bool), cost, np.nan)


def censor(cost: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Costs beyond the cap are never there (inf); an unknown cost stays unknown (NaN)."""
    return np.where(np.isnan(cost), np.nan, np.where(cost <= cap * (1 + 1e-12), cost, np.inf))


def reference_batch(batches) -> str:
    """The batch size the targets are tied to: full batch, else the largest (the fewest updates per epoch)."""
    batches = [str(b) for b in batches]
    return "full" if "full" in batches else max(batches, key=int)


def budget_runs(results: SweepResults, budget: str, index: checkpoints.RunIndex) -> BudgetRuns:
    """The evaluation runs that serve ``budget`` (one per slot), with their caps and record lows."""
    evals = results.evals[results.evals["budget"] == budget].drop_duplicates(RUN)
    runs = evals[RUN + ["run_id", "diverged"]].reset_index(drop=True)
    runs["diverged"] = runs["diverged"].astype(float).to_numpy() > 0
    caps = results.caps[results.caps["budget"] == budget].set_index("dataset")["cap"].astype(float)
    runs["cap"] = runs["dataset"].map(caps).to_numpy(float)
    runs["per_update"] = 1.0
    if budget == "seconds":
        cells = results.cells
        per = pd.DataFrame({"dataset": cells["dataset"], "optimizer": cells["optimizer"],
                            "batch_size": cells["batch_size"].astype(str),
                            "per_update": cells["seconds_per_epoch"].astype(float).to_numpy()
                            / cells["updates_per_epoch"].astype(float).to_numpy()})
        runs["per_update"] = runs[["dataset", "optimizer", "batch_size"]].merge(
            per, on=["dataset", "optimizer", "batch_size"], how="left")["per_update"].to_numpy(float)
    never = set(runs.loc[runs["diverged"], "run_id"])
    return BudgetRuns(budget, runs, *(checkpoints.records(index, f"{s}_loss", runs["run_id"], never)
                                      for s in SPLITS))


def epoch_scores(results: SweepResults, index: checkpoints.RunIndex) -> pd.DataFrame:
    """Per epochs-budget run: the validation loss at E_d (its last checkpoint there), the test loss, accuracy and
    final training loss the evaluation recorded; a diverged run scores the untrained network's losses."""
    evals = results.evals[results.evals["budget"] == "epochs"].drop_duplicates(RUN).reset_index(drop=True)
    caps = results.caps[results.caps["budget"] == "epochs"].set_index("dataset")["cap"]
    out = evals[RUN + ["run_id"]].copy()
    failed = evals["diverged"].astype(float).to_numpy() > 0
    at_cap = checkpoints.value_at(index, "val_loss", out["run_id"], out["dataset"].map(caps).to_numpy(float))
    out["diverged"] = failed
    out["val_epochs"] = np.where(failed, evals["initial_val_loss"].astype(float), at_cap)
    untrained = evals["initial_test_loss"].astype(float).to_numpy()
    out["test_epochs"] = np.where(failed & np.isfinite(untrained), untrained, evals["test_loss"].astype(float))
    out["test_accuracy"] = evals["test_accuracy"].astype(float).to_numpy()
    out["train_final"] = evals["final_train_loss"].astype(float).to_numpy()
    return out


def targets(epochs: pd.DataFrame, factor: float, batches) -> pd.DataFrame:
    """Per dataset: the best full-batch cell (tuned) by the median over its runs of the validation loss at E_d,
    and target = factor x it."""
    reference = reference_batch(batches)
    tuned = epochs[(epochs["track"] == "tuned") & (epochs["batch_size"] == reference)]
    cells = tuned.groupby(["dataset", "optimizer", "batch_size"], sort=False)["val_epochs"].median().reset_index()
    best = cells.sort_values(["dataset", "val_epochs", "optimizer"], kind="stable").groupby("dataset").head(1)
    best = best.rename(columns={"val_epochs": "best_val_loss"}).set_index("dataset")
    best["target"] = factor * best["best_val_loss"]
    return best


def run_scores(results: SweepResults, runs: dict[str, BudgetRuns], target: pd.Series,
               epochs_scored: pd.DataFrame) -> pd.DataFrame:
    """One row per slot (RUN): ``<split>_<budget>`` for every split and budget, each from that budget's run;
    the epochs run's diverged, test accuracy and final training loss; and, on the epochs run, epochs and updates
    to the target within its E_d epochs (``<split>_epochs_to_target``, ``<split>_updates_to_target``)."""
    out = epochs_scored.drop(columns="run_id")
    epochs = runs["epochs"]
    cells = results.cells.assign(batch_size=results.cells["batch_size"].astype(str))
    upe = epochs.runs[["dataset", "optimizer", "batch_size"]].merge(
        cells[["dataset", "optimizer", "batch_size", "updates_per_epoch"]], on=["dataset", "optimizer", "batch_size"],
        how="left")["updates_per_epoch"].to_numpy(float)
    reach = epochs.runs[RUN].copy()
    for split in SPLITS:
        rec = getattr(epochs, split)
        updates = checkpoints.first_reach(rec, epochs.runs["dataset"].map(target).to_numpy(float))
        updates = np.where(rec.recorded | epochs.runs["diverged"].to_numpy(bool), updates, np.nan)
        reach[f"{split}_updates_to_target"] = updates
        reach[f"{split}_epochs_to_target"] = updates / upe
    out = out.merge(reach, on=RUN, how="left")
    for budget in ("updates", "seconds"):
        if budget not in runs:
            continue
        r = runs[budget]
        scored = r.runs[RUN].copy()
        for split in SPLITS:
            scored[f"{split}_{budget}"] = r.costs(split, r.runs["dataset"].map(target).to_numpy(float))
        out = out.merge(scored, on=RUN, how="outer")
    return out


COSTS = ("updates", "seconds", "epochs_to_target", "updates_to_target")


def cell_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: over its runs (tuning runs and seeds pooled), the mean of the losses, accuracy and final
    training loss, the median of the costs, the share of runs that diverged, of runs that reached each target
    (``<split>_<cost>_reached``), and how many runs."""
    grouped = runs.groupby(CELL, sort=False)
    out = pd.DataFrame({"seeds": grouped.size(), "diverged_share": grouped["diverged"].mean()})
    for split in SPLITS:
        out[f"{split}_epochs"] = grouped[f"{split}_epochs"].mean()
        for cost in COSTS:
            column = f"{split}_{cost}"
            if column in runs:
                out[column] = grouped[column].median()
                out[f"{column}_reached"] = np.isfinite(runs[column].astype(float)).groupby(
                    [runs[k] for k in CELL], sort=False).mean()
    out["test_accuracy"] = grouped["test_accuracy"].mean()
    out["train_final"] = grouped["train_final"].mean()
    return out.reset_index()


def measured(cells: pd.DataFrame, budget: str) -> bool:
    """Whether the sweep recorded what a budget needs (a test curve; a cost per epoch for seconds)."""
    column = f"test_{budget}"
    return bool(column in cells and cells[column].astype(float).notna().any()) if len(cells) else False


def cell_summary(runs: pd.DataFrame, evals: pd.DataFrame, st: Statistics, grid: Grid) -> pd.DataFrame:
    """Per cell (epochs budget): mean test loss and accuracy over its runs with bootstrap intervals, runs,
    diverged runs, seconds per evaluation run."""
    keys = ["dataset", "optimizer", "batch_size", "track"]
    seconds = evals[evals["budget"] == "epochs"].drop_duplicates(RUN)[RUN + ["seconds"]]
    scored = runs.merge(seconds, on=RUN, how="left").sort_values(RUN, kind="stable")
    grouped = scored.groupby(keys, sort=False)
    out = grouped.agg(seeds=("diverged", "size"), failed=("diverged", "sum"),
                      seconds_median=("seconds", "median")).reset_index()
    slot = grouped.cumcount().to_numpy()
    cell = grouped.ngroup().to_numpy()
    for column, name in (("test_epochs", "test_loss"), ("test_accuracy", "test_accuracy")):
        values = np.full((len(out), int(slot.max()) + 1 if len(slot) else 0), np.nan)
        values[cell, slot] = scored[column].to_numpy(float)
        values = np.where(np.isfinite(values), values, np.nan)
        counts = np.sum(np.isfinite(values), axis=1)
        out[f"{name}_mean"] = np.where(counts > 0, np.nansum(values, axis=1) / np.maximum(counts, 1), np.nan)
        low, high = stats.bootstrap_mean_ci(values, st.confidence, st.bootstrap_resamples, st.seed)
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    out["failed"] = out["failed"].astype(int)
    out = out[keys + [c for c in out.columns if c not in keys and c not in ("seeds", "failed", "seconds_median")]
              + ["seeds", "failed", "seconds_median"]]
    rank = {"dataset": grid.datasets, "optimizer": grid.optimizers, "batch_size": grid.batches, "track": TRACKS}
    order = [out[k].map({v: i for i, v in enumerate(rank[k])}) for k in keys]
    out = out.assign(_a=order[0], _b=order[1], _c=order[2], _d=order[3])
    return out.sort_values(["_d", "_a", "_b", "_c"]).drop(columns=["_a", "_b", "_c", "_d"]).reset_index(drop=True)


@dataclass(frozen=True)
class Scores:
    """Every evaluation run scored, and its cells."""
    runs: pd.DataFrame  # per slot: every split's score at every budget (``run_scores``)
    cells: pd.DataFrame  # per cell: the same over its runs (``cell_scores``)
    unit: pd.Series  # per dataset: the loss unit, the paired SD of validation loss (``tolerance.paired_sd``)
    summary: pd.DataFrame  # per cell: test loss and accuracy, mean and bootstrap interval over runs
    targets: pd.DataFrame  # per dataset: the best full-batch cell, its validation loss at E_d and the target
    caps: pd.DataFrame  # the caps: dataset, budget, cap, unit
    budget_runs: dict  # budget -> BudgetRuns (what the bootstrap recomputes costs from)

    @property
    def spread(self) -> pd.Series:
        """The loss unit under its former name (the checks read it): per dataset, what a loss difference is
        divided by."""
        return self.unit


def score(results: SweepResults, grid: Grid, report: Report) -> Scores:
    from study.report.judge import tolerance

    index = checkpoints.RunIndex(results.curves)
    runs = {b: budget_runs(results, b, index) for b in BUDGETS if (results.evals["budget"] == b).any()}
    epochs = epoch_scores(results, index)
    found = targets(epochs, report.target.factor, grid.batches)
    scored = run_scores(results, runs, found["target"], epochs)
    return Scores(scored, cell_scores(scored), tolerance.paired_sd(scored),
                  cell_summary(scored, results.evals, report.statistics, grid), found, results.caps, runs)
