"""What tuning bought: the best after k trials, which optimizer wins with k trials, tunability, the gain over the
defaults, several defaults against one tuned, what TPE and pruning buy over random search, what each tuning run
found and chose, and where the search went wrong (edges, divergence, importances)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from study.report.inputs import Grid, SweepResults
from study.report.judge import protocol, pruning
from study.report.judge import trials as trials_, tuning_value
from study.report.judge.families import Family, compare
from study.report.judge.scoring import Scores
from study.report.judge.verdict import Verdict
from study.schema.report import Report


@dataclass(frozen=True)
class Tuning:
    trial_budgets: list[int]  # the k trials at which the winner is named (conf's budgets, clipped to the sweep's)
    best_after_k: pd.DataFrame  # per cell and k: the best validation loss after k trials (``trials.best_after_k``)
    winners: dict[int, Family]  # k -> which optimizer wins with k trials
    random_curves: pd.DataFrame  # per cell and k: expected best-of-k (random arm), validation and test
    tunability: pd.DataFrame
    gain: pd.DataFrame  # default minus tuned test loss per optimizer
    several_defaults: Family | None
    edges: pd.DataFrame  # tuned values on the edge of their search range
    natural_edges: pd.DataFrame  # tuned values at a natural limit (an averaging constant near 0): not warnings
    divergence: pd.DataFrame
    importance: pd.DataFrame
    pruning: pruning.Pruning  # TPE (with pruning) against the random arm, per optimizer
    runs: pd.DataFrame  # per cell and tuning run: its best validation loss, its choice for equal epochs
    hyper_by_budget: pd.DataFrame  # the hyperparameters chosen for each budget, per cell and tuning run
    picks_per_run: pd.DataFrame  # per budget and tuning run: what validation picks from that run alone

    @property
    def random_arm(self) -> bool:
        return bool(len(self.random_curves))


def _winners(curves_k, random_curves, chosen: dict, ks, grid: Grid, unit, report: Report) -> dict:
    """Which optimizer wins with k trials: what k random trials buy, scored on test (Sivaprasad et al. 2020); with
    no random arm, TPE's best-so-far on validation, a single realisation."""
    if len(random_curves):
        return tuning_value.winners_at_k(random_curves, chosen, ks, grid.datasets, unit, report)
    return {k: compare(table, table, unit, report, "budget", str(k), "tuned",
                       {o: f"{o} ({chosen[o]})" for o in table.columns})
            for k, table in trials_.tables_at_k(curves_k, chosen, ks, grid.datasets).items()}


def tuning(results: SweepResults, scores: Scores, verdict: Verdict, grid: Grid, report: Report) -> Tuning:
    trials, unit = results.trials, scores.unit
    max_trials = int(trials.groupby(["dataset", "optimizer", "batch_size", "arm", "tuning_run"]).size().max()) \
        if len(trials) else 0
    ks = sorted({min(k, max_trials) for k in report.budgets if max_trials})
    curves_k = trials_.best_after_k(trials, max_trials, unit) if max_trials else pd.DataFrame()
    random_curves = tuning_value.random_arm_curves(trials, max_trials, report.stability.band_resamples,
                                                   report.statistics.seed, report.stability.band_level) \
        if max_trials and "test_loss" in trials else pd.DataFrame()
    tuned, default = verdict.answer("epochs", "tuned"), verdict.answer("epochs", "default")
    winners = _winners(curves_k, random_curves, tuned.chosen_batch, ks, grid, unit, report) \
        if max_trials and tuned is not None else {}
    margin = report.edge.margin
    return Tuning(
        trial_budgets=ks, best_after_k=curves_k, winners=winners, random_curves=random_curves,
        tunability=tuning_value.tunability(trials, grid.optimizers, report.tunability.margins)
        if len(trials) else pd.DataFrame(),
        gain=tuning_value.tuning_gain(scores.cells, tuned.chosen_batch, grid.datasets, unit, report)
        if tuned is not None and "default" in grid.tracks else pd.DataFrame(),
        several_defaults=tuning_value.several_defaults(scores.cells, tuned.chosen_batch, default.chosen_batch,
                                                       grid.datasets, unit, report)
        if tuned is not None and default is not None else None,
        edges=trials_.edge_warnings(results.evals, results.search_spaces, margin),
        natural_edges=trials_.edge_warnings(results.evals, results.search_spaces, margin, natural=True),
        divergence=trials_.divergence_counts(trials, grid.optimizers),
        importance=trials_.importance_summary(results.importances, grid.optimizers),
        pruning=pruning.tpe_against_random(trials, unit, grid.datasets, grid.optimizers, report),
        runs=protocol.tuning_runs(results, scores), hyper_by_budget=protocol.hyper_by_budget(results.evals),
        picks_per_run=protocol.picks_per_run(scores, grid.datasets, grid.optimizers, grid.batches))
