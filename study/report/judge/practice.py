"""How fast the runs get there in practice: each dataset's target, epochs and updates to it, the batch modes (updates
per epoch, noise, oscillation) and the performance profiles of the cost to the target (each budget's own, censored
at its cap: a censored run is never there)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report.inputs import Grid, SweepResults
from study.report.judge import batchmodes, progress, protocol, stats
from study.report.judge.scoring import Scores
from study.report.judge.verdict import Verdict
from study.schema.report import Report

PROFILES = (("epochs", "test_epochs_to_target", "epochs to the target"),
            ("updates", "test_updates", "updates to the target"),
            ("seconds", "test_seconds", "seconds to the target (this machine)"))


@dataclass(frozen=True)
class Practice:
    targets: pd.DataFrame  # per dataset: the verdict's target and the cell that set it
    budgets: pd.DataFrame  # per dataset and budget: the cap, and whether the best full-batch cell reaches the target
    to_target: pd.DataFrame  # per cell: median epochs / updates to the validation target, reached share
    curves_median: pd.DataFrame  # per cell and epoch: median validation loss and quartiles over its runs
    updates: pd.DataFrame  # per dataset and batch size: updates per epoch, expected and measured
    noise: pd.DataFrame  # per run: late gradient norm against the full batch's, share of epochs loss rose
    batch_summary: pd.DataFrame  # per batch size: the lecture's table, measured
    profiles: list[tuple[str, str, pd.DataFrame]]  # (budget, title, performance profile)
    profile_times: dict[str, pd.DataFrame]  # budget -> datasets x optimizers: the cost the profile ranks


def profiles(cells: pd.DataFrame, verdict: Verdict, datasets, tau_max: float):
    """Performance profiles of the test-curve cost to the target, tuned, optimizers at each budget's choice."""
    taus = np.unique(np.round(np.geomspace(1.0, tau_max, 200), 6))
    tuned = cells[cells["track"] == "tuned"]
    out, times = [], {}
    for name, column, title in PROFILES:
        a = verdict.answer(name, "tuned")
        if a is None or not tuned[column].notna().any():
            continue
        table = pd.DataFrame({o: tuned[(tuned["optimizer"] == o) & (tuned["batch_size"] == b)].set_index(
            "dataset")[column] for o, b in a.chosen_batch.items()}).reindex(datasets)
        times[name] = table
        out.append((name, f"{title}, optimizers at the batch size chosen for it",
                    stats.performance_profile(table.fillna(np.inf), taus)))
    return out, times


def practice(results: SweepResults, scores: Scores, verdict: Verdict, grid: Grid, report: Report) -> Practice:
    evals = results.evals
    curves = progress.epoch_ends(results.curves, scores.budget_runs["epochs"].runs["run_id"])
    updates, noise = batchmodes.updates_per_epoch(curves, evals), batchmodes.noise(curves)
    shown, times = profiles(scores.cells, verdict, list(grid.datasets), report.profile.tau_max)
    return Practice(targets=scores.targets, budgets=protocol.budgets(scores, grid.batches),
                    to_target=progress.cells_to_target(scores.runs),
                    curves_median=progress.median_curves(curves), updates=updates, noise=noise,
                    batch_summary=batchmodes.summary(noise, updates, grid.batches), profiles=shown,
                    profile_times=times)
