"""Everything the report says, computed once from a SweepResults: the document only formats this.

``analyse(results, settings)`` is a pure function: the same results and settings give the same Analysis, with
every table in a stable order (the config's order of datasets, optimizers and batch sizes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report import batchmodes, budget, claims, families, progress, stats
from study.report.families import Family, ordered
from study.report.inputs import SweepResults
from study.report.settings import Settings
from study.report.verdict import Judgement, judge


@dataclass
class Analysis:
    results: SweepResults
    settings: Settings
    datasets: list[str]
    optimizers: list[str]
    batches: list[str]
    tracks: list[str]
    cells: pd.DataFrame  # per (dataset, optimizer, batch, track): means and bootstrap intervals over seeds
    families: dict[tuple, Family]
    judgements: dict[tuple, Judgement]
    best_batch: dict[str, dict[str, str]]  # track -> optimizer -> its best batch size
    targets: pd.DataFrame
    to_target: pd.DataFrame  # per cell: median epochs / updates to target, reached share
    curves_median: pd.DataFrame
    updates: pd.DataFrame
    noise: pd.DataFrame
    batch_summary: pd.DataFrame
    budget_curves: pd.DataFrame
    budgets: list[int]
    budget_families: dict[int, Family]
    budget_judgements: dict[int, Judgement]
    edges: pd.DataFrame
    divergence: pd.DataFrame
    importance: pd.DataFrame
    profiles: list[tuple[str, str, pd.DataFrame]]  # (name, title, profile)
    profile_times: dict[str, pd.DataFrame]
    claims: list
    claims_raw: dict

    @property
    def recommended(self) -> str | None:
        """The optimizer with the best mean rank in the tuned overall family (named a winner only if judged so)."""
        family = self.families.get(("tuned", "overall", ""))
        return family.result.control if family else None


def cell_summary(scored: pd.DataFrame, settings: Settings, datasets, optimizers, batches) -> pd.DataFrame:
    """Per cell: mean test loss and accuracy over seeds with bootstrap intervals, seeds, failed runs, seconds."""
    keys = ["dataset", "optimizer", "batch_size", "track"]
    groups = list(scored.groupby(keys, sort=False))
    width = max(len(g) for _, g in groups)

    def matrix(column):
        m = np.full((len(groups), width), np.nan)
        for i, (_, g) in enumerate(groups):
            m[i, :len(g)] = g.sort_values("seed")[column].to_numpy(float)
        return m

    out = pd.DataFrame([dict(zip(keys, key)) for key, _ in groups])
    for column, name in (("loss", "test_loss"), ("test_accuracy", "test_accuracy")):
        values = np.where(np.isfinite(matrix(column)), matrix(column), np.nan)
        counts = np.sum(np.isfinite(values), axis=1)
        out[f"{name}_mean"] = np.where(counts > 0, np.nansum(values, axis=1) / np.maximum(counts, 1), np.nan)
        low, high = stats.bootstrap_mean_ci(values, settings.confidence, settings.bootstrap_resamples, settings.seed)
        out[f"{name}_low"], out[f"{name}_high"] = low, high
    out["seeds"] = [len(g) for _, g in groups]
    out["failed"] = [int(g["failed"].sum()) for _, g in groups]
    out["seconds_median"] = [float(g["seconds"].median()) for _, g in groups]
    rank = {"dataset": datasets, "optimizer": optimizers, "batch_size": batches, "track": families.TRACKS}
    order = [out[k].map({v: i for i, v in enumerate(rank[k])}) for k in keys]
    out = out.assign(_a=order[0], _b=order[1], _c=order[2], _d=order[3])
    return out.sort_values(["_d", "_a", "_b", "_c"]).drop(columns=["_a", "_b", "_c", "_d"]).reset_index(drop=True)


def _profiles(to_target, best_batch, recommended, datasets, batches, tau_max):
    taus = np.unique(np.round(np.geomspace(1.0, tau_max, 200), 6))
    tuned = to_target[to_target["track"] == "tuned"]
    out, times = [], {}
    by_optimizer = pd.DataFrame({o: tuned[(tuned["optimizer"] == o) & (tuned["batch_size"] == b)].set_index(
        "dataset")["epochs_to_target"] for o, b in best_batch.items()}).reindex(datasets)
    times["optimizers"] = by_optimizer
    out.append(("optimizers", "optimizers, each at its best batch size", stats.performance_profile(
        by_optimizer.fillna(np.inf), taus)))
    if recommended is not None:
        rec = tuned[tuned["optimizer"] == recommended]
        by_batch = pd.DataFrame({b: rec[rec["batch_size"] == b].set_index("dataset")["epochs_to_target"]
                                 for b in batches}).reindex(datasets)
        times["batch_sizes"] = by_batch
        out.append(("batch_sizes", f"batch sizes for {recommended}", stats.performance_profile(
            by_batch.fillna(np.inf), taus)))
    return out, times


ROW_ORDER = {"evals": ["dataset", "optimizer", "batch_size", "track", "seed"],
             "curves": ["dataset", "optimizer", "batch_size", "track", "seed", "epoch"],
             "trials": ["dataset", "optimizer", "batch_size", "arm", "number"],
             "importances": ["dataset", "optimizer", "batch_size", "param"]}


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


def analyse(results: SweepResults, settings: Settings) -> Analysis:
    results = canonical(results)
    config = results.config
    datasets = ordered(results.evals["dataset"], config.get("datasets", []))
    optimizers = ordered(results.evals["optimizer"], config.get("optimizers", []))
    batches = ordered(results.evals["batch_size"].astype(str), [str(b) for b in config.get("batch_sizes", [])])
    tracks = [t for t in families.TRACKS if (results.evals["track"] == t).any()]
    config = {**config, "datasets": datasets, "optimizers": optimizers, "batch_sizes": batches}

    scored = families.scored_evals(results.evals.assign(batch_size=results.evals["batch_size"].astype(str)))
    fams = families.build_families(scored, config, settings)
    judgements = {key: judge(f, settings.alpha, settings.sure) for key, f in fams.items()}
    best_batch = {t: families.best_batch_sizes(fams, t) for t in tracks}

    curves = results.curves.assign(batch_size=results.curves["batch_size"].astype(str))
    targets = progress.targets(curves, settings.target_factor)
    to_target = progress.cells_to_target(progress.runs_to_target(curves, targets["target"]))
    updates = batchmodes.updates_per_epoch(curves, scored)
    noise = batchmodes.noise(curves)

    trials = results.trials.assign(batch_size=results.trials["batch_size"].astype(str))
    max_trials = int(trials.groupby(["dataset", "optimizer", "batch_size", "arm"]).size().max()) if len(trials) else 0
    budgets = sorted({min(k, max_trials) for k in settings.budgets if max_trials})
    curves_k = budget.budget_curves(trials, max_trials) if max_trials else pd.DataFrame()
    budget_families, budget_judgements = {}, {}
    if max_trials and "tuned" in best_batch:
        for k, table in budget.budget_tables(curves_k, best_batch["tuned"], budgets, datasets).items():
            family = Family("budget", str(k), "tuned", families.compare(table, settings), {
                o: f"{o} ({best_batch['tuned'][o]})" for o in table.columns})
            budget_families[k], budget_judgements[k] = family, judge(family, settings.alpha, settings.sure)

    recommended = fams[("tuned", "overall", "")].result.control if ("tuned", "overall", "") in fams else None
    profiles, times = _profiles(to_target, best_batch.get("tuned", {}), recommended, datasets, batches,
                                settings.tau_max)
    adam_track = settings.claims.get("practice", {}).get("adam_track", "default")
    checks, raw = claims.check_all(
        settings.claims, fams.get((adam_track, "overall", "")), judgements.get((adam_track, "overall", "")),
        to_target[to_target["track"] == settings.claims.get("practice", {}).get("speed_track", "tuned")], updates)
    return Analysis(
        results=results, settings=settings, datasets=datasets, optimizers=optimizers, batches=batches,
        tracks=tracks, cells=cell_summary(scored, settings, datasets, optimizers, batches), families=fams,
        judgements=judgements, best_batch=best_batch, targets=targets, to_target=to_target,
        curves_median=progress.median_curves(curves), updates=updates, noise=noise,
        batch_summary=batchmodes.summary(noise, updates, batches), budget_curves=curves_k, budgets=budgets,
        budget_families=budget_families, budget_judgements=budget_judgements,
        edges=budget.edge_warnings(results.evals, config.get("search_spaces", {}), settings.edge_margin),
        divergence=budget.divergence_counts(trials, optimizers),
        importance=budget.importance_summary(results.importances, optimizers), profiles=profiles,
        profile_times=times, claims=checks, claims_raw=raw)
