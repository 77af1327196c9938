"""Tuning trials: what a tuning budget of k trials buys, and where tuning went wrong (edges, divergence).

Best validation loss after k trials, per cell:
  - where the sweep has an unpruned random-search arm ("random"): the expected best-of-k over its trials
    (Dodge et al. 2019; Sivaprasad et al. 2020), exact, with a diverged trial counting at its penalty;
  - otherwise TPE's best-so-far in trial order, the mean over the cell's tuning runs (a few realisations, labelled
    as such: TPE's later trials depend on its earlier ones, so they cannot be resampled).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.core.hyperparams import search_value, searched_as
from study.report.judge import stats

CELL = ["dataset", "optimizer", "batch_size"]
RANDOM_METHOD = "expected best-of-k (random search)"
TPE_METHOD = "best-so-far (TPE)"


def best_after_k(trials: pd.DataFrame, max_k: int, spread: pd.Series | None = None) -> pd.DataFrame:
    """Per cell and k = 1..max_k: the best validation loss after k trials and the method that gave it."""
    rows = []
    ks = np.arange(1, max_k + 1)
    for cell, group in trials.groupby(CELL, sort=False):
        random = group[(group["arm"] == "random") & group["state"].isin(["COMPLETE", "DIVERGED"])]
        if len(random):
            values, method = stats.expected_best_of_k(random["value"].to_numpy(float), ks), RANDOM_METHOD
        else:  # each tuning run's best so far, averaged over the runs
            per_run = []
            for _, run in group[group["arm"] == "tpe"].groupby("tuning_run", sort=True):
                running = stats.best_so_far(run.sort_values("number")["value"].to_numpy(float))
                per_run.append([running[min(k, len(running)) - 1] if len(running) else np.nan for k in ks])
            values = np.nanmean(np.array(per_run, float), axis=0) if per_run else np.full(len(ks), np.nan)
            method = TPE_METHOD
        rows.append(pd.DataFrame({**dict(zip(CELL, cell)), "k": ks, "best_val_loss": values, "method": method}))
    if not rows:
        return pd.DataFrame(columns=CELL + ["k", "best_val_loss", "method"])
    curves = pd.concat(rows, ignore_index=True)
    # per dataset, the excess over the best any trial reached there in seed-to-seed spreads, so that datasets can be
    # pooled and nothing is divided by a loss that may be near zero
    best = trials[trials["state"] == "COMPLETE"].groupby("dataset")["value"].min()
    unit = curves["dataset"].map(spread) if spread is not None else np.nan
    curves["excess"] = (curves["best_val_loss"] - curves["dataset"].map(best)) / unit
    return curves


def tables_at_k(curves: pd.DataFrame, best_batch: dict[str, str], budgets, datasets) -> dict[int, pd.DataFrame]:
    """For each budget k: datasets x optimizers (each at its own best batch size) of the best-of-k validation
    loss, ready for the family comparison."""
    tables = {}
    for k in budgets:
        at_k = curves[curves["k"] == k]
        table = pd.DataFrame({o: at_k[(at_k["optimizer"] == o) & (at_k["batch_size"] == b)].set_index(
            "dataset")["best_val_loss"] for o, b in best_batch.items()})
        tables[k] = table.reindex([d for d in datasets if d in table.index])
    return tables


def _position(value: float, space: dict) -> float | None:
    """Where a value sits in its search range, 0 = low edge, 1 = high edge (log scale for log ranges; 1 - value
    for ranges searched as 1 - x)."""
    if space.get("fixed") is not None or not {"low", "high"} <= set(space) or not np.isfinite(value):
        return None
    if not (np.isfinite(float(space["low"])) and np.isfinite(float(space["high"]))):
        return None
    x = search_value(value, bool(space.get("one_minus")))
    low, high = float(space["low"]), float(space["high"])
    if space.get("log"):
        if x <= 0:
            return None
        x, low, high = math.log(x), math.log(low), math.log(high)
    return (x - low) / (high - low) if high > low else None


def _natural_limit(space: dict, edge: str) -> bool:
    """An edge no wider range could move: 1 - x searched up to 1, i.e. the averaging constant x down to 0 (no
    momentum, no averaging). A tuned value there is a finding about the optimizer, not a truncated search."""
    return edge == "high" and bool(space.get("one_minus")) and float(space["high"]) == 1.0


def edge_warnings(evals: pd.DataFrame, search_spaces: dict, margin: float, natural: bool = False) -> pd.DataFrame:
    """Every tuned value (each tuning run's choice for equal epochs) within ``margin`` of an edge of its search
    range: the optimum may lie outside it. With ``natural``, instead the tuned values at an edge that is the
    parameter's natural limit (``_natural_limit``)."""
    tuned = evals[(evals["track"] == "tuned") & (evals["budget"] == "epochs")].drop_duplicates(CELL + ["tuning_run"])
    rows = []
    for _, run in tuned.iterrows():
        for param, space in search_spaces.get(run["optimizer"], {}).items():
            if param not in run:
                continue
            position = _position(float(run[param]), space)
            if position is None or margin <= position <= 1 - margin:
                continue
            edge = "low" if position < margin else "high"
            if _natural_limit(space, edge) != natural:
                continue
            bound = space["low"] if (edge == "low") else space["high"]
            rows.append({**{k: run[k] for k in CELL}, "tuning_run": int(run["tuning_run"]), "param": param,
                         "value": float(run[param]), "edge": edge,
                         "searched_as": searched_as(param, bool(space.get("one_minus"))), "bound": float(bound),
                         "position": float(position)})
    out = pd.DataFrame(rows, columns=CELL + ["tuning_run", "param", "value", "edge", "searched_as", "bound",
                                             "position"])
    order = {o: i for i, o in enumerate(search_spaces)}
    return out.assign(_o=out["optimizer"].map(order)).sort_values(["_o", "param", "edge"], kind="stable").drop(
        columns="_o").reset_index(drop=True)


def divergence_counts(trials: pd.DataFrame, optimizers: list[str]) -> pd.DataFrame:
    """Per optimizer: trials, how many diverged / were pruned / failed, and the diverged share."""
    rows = []
    for optimizer in optimizers:
        t = trials[trials["optimizer"] == optimizer]
        n = len(t)
        counts = {state: int((t["state"] == state).sum()) for state in ("COMPLETE", "PRUNED", "DIVERGED", "FAIL")}
        rows.append({"optimizer": optimizer, "trials": n, **{s.lower(): c for s, c in counts.items()},
                     "diverged_share": counts["DIVERGED"] / n if n else float("nan")})
    return pd.DataFrame(rows)


def importance_summary(importances: pd.DataFrame, optimizers: list[str]) -> pd.DataFrame:
    """Mean importance of each tuned parameter per optimizer, over the cells (Optuna's fANOVA-style evaluator)."""
    if importances.empty:
        return pd.DataFrame(columns=["optimizer", "param", "mean_importance", "cells"])
    grouped = importances.groupby(["optimizer", "param"], sort=False)["importance"]
    out = pd.DataFrame({"mean_importance": grouped.mean(), "cells": grouped.size()}).reset_index()
    out["order"] = out["optimizer"].map({o: i for i, o in enumerate(optimizers)})
    return out.sort_values(["order", "mean_importance", "param"], ascending=[True, False, True]).drop(
        columns="order").reset_index(drop=True)
