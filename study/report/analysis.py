"""Everything the report says, computed once from a SweepResults: the document only formats this.

``analyse(results, settings)`` is a pure function: the same results and settings give the same Analysis, with
every table in a stable order (the config's order of datasets, optimizers and batch sizes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report.judge import batchmodes, trials as budget, progress, scoring, stability, stats, tuning_value
from study.report.checks import claims, literature
from study.report.judge.answer import TRACKS, Answer, answers, ordered, rope_sensitivity
from study.report.judge.families import Family, compare, secondary
from study.report.inputs import SweepResults
from study.report.settings import Settings


@dataclass
class Analysis:
    results: SweepResults
    settings: Settings
    datasets: list[str]
    optimizers: list[str]
    batches: list[str]
    tracks: list[str]
    runs: pd.DataFrame  # per evaluation run: every split's score at every budget (study.report.scoring)
    cell_scores: pd.DataFrame  # per cell: the same, over seeds
    spread: pd.Series  # per dataset: the seed-to-seed spread of test loss (the loss ROPE's unit)
    answers: dict[tuple[str, str], Answer]  # (budget, track) -> the answer
    stability: pd.DataFrame  # P(best) per budget, track, optimizer (and batch size of the recommended one)
    same_headline: dict[tuple[str, str], float]  # share of resamples that give the same optimizer and batch size
    sensitivity: pd.DataFrame  # P(equivalent) and status at each declared ROPE width
    defaults_enough: dict[str, dict]  # budget -> tuned vs default for the recommended optimizer
    families: dict[tuple, Family]  # secondary comparisons (track, kind, fixed) at equal epochs
    cells: pd.DataFrame  # per (dataset, optimizer, batch, track): means and bootstrap intervals over seeds
    targets: pd.DataFrame
    to_target: pd.DataFrame  # per cell: median epochs / updates to the validation target, reached share
    curves_median: pd.DataFrame
    updates: pd.DataFrame
    noise: pd.DataFrame
    batch_summary: pd.DataFrame
    budget_curves: pd.DataFrame
    budgets: list[int]
    budget_families: dict[int, Family]
    random_curves: pd.DataFrame  # per cell and k: expected best-of-k (random arm), validation and test
    tunability: pd.DataFrame
    tuning_gain: pd.DataFrame
    several_defaults: Family | None
    literature: pd.DataFrame
    edges: pd.DataFrame
    natural_edges: pd.DataFrame  # tuned values at a natural limit (an averaging constant near 0): not warnings
    divergence: pd.DataFrame
    importance: pd.DataFrame
    profiles: list[tuple[str, str, pd.DataFrame]]  # (name, title, profile)
    profile_times: dict[str, pd.DataFrame]
    claims: list
    claims_raw: dict

    def answer(self, budget: str = "epochs", track: str = "tuned") -> Answer | None:
        return self.answers.get((budget, track))

    @property
    def recommended(self) -> str | None:
        """The optimizer recommended at equal epochs, tuned (chosen on validation)."""
        a = self.answer()
        return a.recommended if a else None


def cell_summary(runs: pd.DataFrame, evals: pd.DataFrame, settings: Settings, datasets, optimizers,
                 batches) -> pd.DataFrame:
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
        low, high = stats.bootstrap_mean_ci(values, settings.confidence, settings.bootstrap_resamples, settings.seed)
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    out["seeds"] = [len(g) for _, g in groups]
    out["failed"] = [int(g["diverged"].sum()) for _, g in groups]
    out["seconds_median"] = [float(g["seconds"].median()) for _, g in groups]
    rank = {"dataset": datasets, "optimizer": optimizers, "batch_size": batches, "track": TRACKS}
    order = [out[k].map({v: i for i, v in enumerate(rank[k])}) for k in keys]
    out = out.assign(_a=order[0], _b=order[1], _c=order[2], _d=order[3])
    return out.sort_values(["_d", "_a", "_b", "_c"]).drop(columns=["_a", "_b", "_c", "_d"]).reset_index(drop=True)


def _profiles(cells: pd.DataFrame, answers_: dict, datasets, tau_max):
    """Performance profiles of the test-curve cost to the target, tuned, optimizers at each budget's choice."""
    taus = np.unique(np.round(np.geomspace(1.0, tau_max, 200), 6))
    tuned = cells[cells["track"] == "tuned"]
    out, times = [], {}
    for name, column, title in (("epochs", "test_epochs_to_target", "epochs to the target"),
                                  ("updates", "test_updates", "updates to the target"),
                                  ("seconds", "test_seconds", "seconds to the target (this machine)")):
        a = answers_.get((name, "tuned"))
        if a is None or not tuned[column].notna().any():
            continue
        table = pd.DataFrame({o: tuned[(tuned["optimizer"] == o) & (tuned["batch_size"] == b)].set_index(
            "dataset")[column] for o, b in a.chosen_batch.items()}).reindex(datasets)
        times[name] = table
        out.append((name, f"{title}, optimizers at the batch size chosen for it",
                    stats.performance_profile(table.fillna(np.inf), taus)))
    return out, times


ROW_ORDER = {"evals": ["dataset", "optimizer", "batch_size", "track", "seed"],
             "curves": ["dataset", "optimizer", "batch_size", "track", "seed", "epoch"],
             "trials": ["dataset", "optimizer", "batch_size", "arm", "number"],
             "importances": ["dataset", "optimizer", "batch_size", "param"],
             "cells": ["dataset", "optimizer", "batch_size"]}


def canonical(results: SweepResults) -> SweepResults:
    """The same results with every table's rows in one fixed order and batch sizes as text: the report must not
    depend on the order in which a store happens to return runs (bootstrap draws are assigned by row)."""
    frames = {}
    for name, keys in ROW_ORDER.items():
        frame = getattr(results, name)
        if "batch_size" in frame.columns:
            frame = frame.assign(batch_size=frame["batch_size"].astype(str))
        present = [k for k in keys if k in frame.columns]
        frames[name] = frame.sort_values(present, kind="mergesort").reset_index(drop=True) if len(frame) else frame
    return dataclasses.replace(results, **frames)


def _defaults_enough(cells: pd.DataFrame, answers_: dict, spread: pd.Series, settings: Settings) -> dict:
    """Per budget: the recommended optimizer at its chosen batch size, tuned against its defaults (test, paired by
    dataset): are the defaults practically as good?"""
    from study.report.judge.answer import differences, score_table

    out = {}
    for cost in scoring.BUDGETS:
        a = answers_.get((cost, "tuned"))
        if a is None or not a.measured or ("default" not in set(cells["track"])):
            continue
        key = (a.recommended, a.batch)
        datasets = list(a.family.scores.index)
        tuned = score_table(cells, f"test_{cost}", "tuned", datasets)[key]
        default = score_table(cells, f"test_{cost}", "default", datasets)[key]
        table = pd.DataFrame({"tuned": tuned, "default": default})
        never = 2 * table.replace(np.inf, np.nan).max(axis=1)
        result = stats.compare_family(table, differences(cost, spread, never), rope=a.rope, alpha=settings.alpha,
                                      nsamples=settings.bayes_samples, seed=settings.seed,
                                      confidence=settings.confidence)
        pair = result.pair("tuned", "default")
        out[cost] = {"optimizer": a.recommended, "batch_size": a.batch, **pair,
                       "enough": pair["p_equivalent"] >= settings.sure or pair["p_b_better"] >= settings.sure}
    return out


def analyse(results: SweepResults, settings: Settings) -> Analysis:
    results = canonical(results)
    config = results.config
    datasets = ordered(results.evals["dataset"], config.get("datasets", []))
    optimizers = ordered(results.evals["optimizer"], config.get("optimizers", []))
    batches = ordered(results.evals["batch_size"].astype(str), [str(b) for b in config.get("batch_sizes", [])])
    tracks = [t for t in TRACKS if (results.evals["track"] == t).any()]
    config = {**config, "datasets": datasets, "optimizers": optimizers, "batch_sizes": batches}

    curves = results.curves.assign(batch_size=results.curves["batch_size"].astype(str))
    evals = results.evals.assign(batch_size=results.evals["batch_size"].astype(str))
    runs = scoring.run_scores(evals, curves, results.cells, settings.target_factor)
    cell_scores = scoring.cell_scores(runs)
    spread = scoring.loss_spread(runs)
    found = answers(cell_scores, runs, spread, datasets, optimizers, batches, settings)
    stable, same = [], {}
    for key, a in found.items():
        table, same[key] = stability.stability(a, runs, datasets, optimizers, batches,
                                               settings.stability_resamples, settings.seed)
        stable.append(table)
    widths = {"epochs": settings.rope_loss, "updates": settings.rope_cost, "seconds": settings.rope_cost}
    sensitivity = pd.concat([rope_sensitivity(a, widths[b], settings) for (b, _), a in found.items()],
                            ignore_index=True)

    targets = scoring.targets(curves, evals, settings.target_factor)  # the verdict's targets: one per dataset
    to_target = progress.cells_to_target(progress.runs_to_target(curves, targets["target"]))
    updates = batchmodes.updates_per_epoch(curves, evals)
    noise = batchmodes.noise(curves)

    trials = results.trials.assign(batch_size=results.trials["batch_size"].astype(str))
    max_trials = int(trials.groupby(["dataset", "optimizer", "batch_size", "arm"]).size().max()) if len(trials) else 0
    budgets = sorted({min(k, max_trials) for k in settings.budgets if max_trials})
    curves_k = budget.budget_curves(trials, max_trials, spread) if max_trials else pd.DataFrame()
    budget_families = {}
    epochs_tuned = found.get(("epochs", "tuned"))
    random_curves = tuning_value.random_arm_curves(trials, max_trials, settings.band_resamples, settings.seed) \
        if max_trials and "test_loss" in trials else pd.DataFrame()
    if max_trials and epochs_tuned is not None:
        chosen = epochs_tuned.chosen_batch
        if len(random_curves):  # what k random trials buy, scored on test (Sivaprasad et al. 2020)
            budget_families = tuning_value.budget_families(random_curves, chosen, budgets, datasets, spread, settings)
        else:  # no random arm: TPE's best-so-far on validation, a single realisation
            for k, table in budget.budget_tables(curves_k, chosen, budgets, datasets).items():
                budget_families[k] = compare(table, table, spread, settings, "budget", str(k), "tuned",
                                             {o: f"{o} ({chosen[o]})" for o in table.columns})
    epochs_default = found.get(("epochs", "default"))
    several = tuning_value.several_defaults(cell_scores, epochs_tuned.chosen_batch, epochs_default.chosen_batch,
                                            datasets, spread, settings) \
        if epochs_tuned is not None and epochs_default is not None else None

    profiles, times = _profiles(cell_scores, found, datasets, settings.tau_max)
    adam_track = settings.claims.get("practice", {}).get("adam_track", "default")
    checks, raw = claims.check_all(
        settings.claims, found.get(("epochs", adam_track)),
        to_target[to_target["track"] == settings.claims.get("practice", {}).get("speed_track", "tuned")], updates)
    out = Analysis(
        results=results, settings=settings, datasets=datasets, optimizers=optimizers, batches=batches,
        tracks=tracks, runs=runs, cell_scores=cell_scores, spread=spread, answers=found,
        stability=pd.concat(stable, ignore_index=True) if stable else pd.DataFrame(), same_headline=same,
        sensitivity=sensitivity, defaults_enough=_defaults_enough(cell_scores, found, spread, settings),
        families=secondary(cell_scores, spread, datasets, optimizers, batches, tracks, settings),
        cells=cell_summary(runs, evals, settings, datasets, optimizers, batches), targets=targets,
        to_target=to_target, curves_median=progress.median_curves(curves), updates=updates, noise=noise,
        batch_summary=batchmodes.summary(noise, updates, batches), budget_curves=curves_k, budgets=budgets,
        budget_families=budget_families, random_curves=random_curves,
        tunability=tuning_value.tunability(trials, optimizers) if len(trials) else pd.DataFrame(),
        tuning_gain=tuning_value.tuning_gain(cell_scores, epochs_tuned.chosen_batch, datasets, spread, settings)
        if epochs_tuned is not None and "default" in tracks else pd.DataFrame(),
        several_defaults=several, literature=pd.DataFrame(),
        edges=budget.edge_warnings(results.evals, config.get("search_spaces", {}), settings.edge_margin),
        natural_edges=budget.edge_warnings(results.evals, config.get("search_spaces", {}), settings.edge_margin,
                                           natural=True),
        divergence=budget.divergence_counts(trials, optimizers),
        importance=budget.importance_summary(results.importances, optimizers), profiles=profiles,
        profile_times=times, claims=checks, claims_raw=raw)
    lit_cfg = settings.claims.get("literature")
    if lit_cfg:
        out.literature = literature.findings(out, several, budget_families if len(random_curves) else {}, lit_cfg,
                                             settings.claims["verdict"])
    return out
