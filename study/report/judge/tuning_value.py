"""What tuning buys, measured the way practitioners meet it (Sivaprasad et al. 2020; Schmidt et al. 2021).

- **Expected best-of-k** (Dodge et al. 2019): from the unpruned random-search arm of a cell, the expected *test*
  loss of the trial that is best on validation among k drawn at random (with replacement), k = 1..budget, in closed
  form, with a bootstrap band over the arm's trials. A budget of k trials is what a practitioner can afford; the
  test loss scores what validation would pick. The random arm's test losses are read here and nowhere else.
- **Tunability**: the share of random trials whose validation loss is within 5% and 10% of the cell's best: how
  forgiving an optimizer is of a hyperparameter drawn at random.
- **Tuning gain**: per optimizer, default minus tuned test loss per dataset, in loss units.
- **Several defaults against one tuned**: per dataset, the best of the optimizers at their defaults (chosen on
  validation) against each optimizer tuned.
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from study.report.judge import stats
from study.report.judge.answer import family_tests, score_table
from study.report.judge.decide import judge
from study.report.judge.families import Family, compare, loss_differences
from study.schema.report import Report

CELL = ["dataset", "optimizer", "batch_size"]
SCORED = ("COMPLETE", "DIVERGED")  # a diverged trial counts at its penalty: no better than not training


def pick_weights(n: int, k: int) -> np.ndarray:
    """P(the validation-best of k draws with replacement is the i-th best of n), i = 1..n."""
    survive = (n - np.arange(n + 1)) / n
    return survive[:-1] ** k - survive[1:] ** k


@functools.lru_cache(maxsize=64)
def _pick_weights_table(n: int, ks: tuple) -> np.ndarray:
    """``pick_weights(n, k)`` for each k, one row each: the same for every cell of n trials and every bootstrap
    resample of it (computed once: the bands resample each cell hundreds of times)."""
    table = np.array([pick_weights(n, k) for k in ks])
    table.setflags(write=False)
    return table


def expected_best_of_k(val: np.ndarray, test: np.ndarray, ks) -> tuple[np.ndarray, np.ndarray]:
    """Expected validation loss of the best of k, and expected test loss of the trial validation picks."""
    order = np.lexsort((np.arange(len(val)), val))  # by validation, ties by trial number
    v, t = val[order], test[order]
    weights = _pick_weights_table(len(v), tuple(int(k) for k in ks))
    return weights @ v, weights @ t


def random_arm_curves(trials: pd.DataFrame, max_k: int, resamples: int, seed: int, level: float) -> pd.DataFrame:
    """Per cell with a random arm and k = 1..max_k: expected best-of-k validation loss, expected test loss of
    validation's pick, and a bootstrap band of the latter (the arm's trials resampled with replacement)."""
    rng = np.random.default_rng(seed)
    ks = np.arange(1, max_k + 1)
    rows = []
    arm = trials[(trials["arm"] == "random") & trials["state"].isin(SCORED)]
    arm = arm[np.isfinite(arm["value"].astype(float)) & np.isfinite(arm["test_loss"].astype(float))]
    for cell, group in arm.groupby(CELL, sort=False):
        val, test = group["value"].to_numpy(float), group["test_loss"].to_numpy(float)
        exp_val, exp_test = expected_best_of_k(val, test, ks)
        draws = rng.integers(0, len(val), (resamples, len(val)))
        band = np.array([expected_best_of_k(val[d], test[d], ks)[1] for d in draws])
        low, high = np.quantile(band, [(1 - level) / 2, (1 + level) / 2], axis=0)
        rows.append(pd.DataFrame({**dict(zip(CELL, cell)), "k": ks, "val": exp_val, "test": exp_test,
                                  "test_low": low, "test_high": high, "trials": len(val)}))
    columns = CELL + ["k", "val", "test", "test_low", "test_high", "trials"]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


def winners_at_k(curves: pd.DataFrame, chosen_batch: dict, ks, datasets, unit, report: Report) -> dict:
    """Which optimizer wins with k random trials: each optimizer at its chosen batch size, chosen by expected
    best-of-k validation loss, judged on the expected test loss of validation's pick."""
    out = {}
    for k in ks:
        at = curves[curves["k"] == k]
        present = [d for d in datasets if d in set(at["dataset"])]

        def table(column):
            return pd.DataFrame({o: at[(at["optimizer"] == o) & (at["batch_size"] == b)].set_index("dataset")[column]
                                 for o, b in chosen_batch.items()}).reindex(present)

        val, test = table("val"), table("test")
        if val.empty:
            continue
        out[k] = compare(val, test, unit, report, "budget", str(k), "tuned",
                         {o: f"{o} ({b})" for o, b in chosen_batch.items()})
    return out


def within(margin: float) -> str:
    """The tunability table's column for a margin: within_5pct."""
    return f"within_{round(100 * margin)}pct"


def tunability(trials: pd.DataFrame, optimizers, margins) -> pd.DataFrame:
    """Per optimizer: the share of its random trials (over all its cells) within each margin of the cell's best
    validation loss (the best over both arms), and how many trials and cells that rests on."""
    scored = trials[trials["state"].isin(SCORED) & np.isfinite(trials["value"].astype(float))]
    best = scored.groupby(CELL, sort=False)["value"].min().rename("best").reset_index()
    arm = trials[trials["arm"] == "random"].merge(best, on=CELL, how="left")
    value = np.where(arm["state"].isin(SCORED), arm["value"].astype(float), np.inf)  # pruned / failed: not close
    rows = []
    for optimizer in optimizers:
        mine = (arm["optimizer"] == optimizer).to_numpy()
        row = {"optimizer": optimizer, "trials": int(mine.sum()),
               "cells": int(arm.loc[mine, CELL].drop_duplicates().shape[0])}
        for margin in margins:
            close = value[mine] <= (1 + margin) * arm.loc[mine, "best"].to_numpy(float)
            row[within(margin)] = float(close.mean()) if mine.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def tuning_gain(cells: pd.DataFrame, chosen_batch: dict, datasets, unit, report: Report) -> pd.DataFrame:
    """Per optimizer at its tuned batch size: default minus tuned test loss per dataset in loss units (> 0: tuning
    helps), the median with a bootstrap interval, and P(tuned better) / P(equivalent) (exploratory)."""
    tuned = score_table(cells, "test_epochs", "tuned", datasets)
    default = score_table(cells, "test_epochs", "default", datasets)
    diff = loss_differences(unit)
    st = report.statistics
    rows = []
    for optimizer, batch in chosen_batch.items():
        if (optimizer, batch) not in default.columns:
            continue
        d = np.asarray(diff(default[(optimizer, batch)], tuned[(optimizer, batch)]), float)
        d = d[np.isfinite(d)]
        low, high = stats.bootstrap_median_ci(d, st.confidence, st.bootstrap_resamples, st.seed)
        worse, same, better = stats.bayesian_signed_rank(d, report.tolerance.on_scale("epochs"), st.bayes_samples,
                                                         st.seed) if len(d) else (np.nan,) * 3
        rows.append({"optimizer": optimizer, "batch_size": batch, "median_gain": float(np.median(d)) if len(d)
                     else np.nan, "low": low, "high": high, "p_tuned_better": better, "p_equivalent": same,
                     "p_default_better": worse, "datasets": len(d)})
    return pd.DataFrame(rows)


def several_defaults(cells: pd.DataFrame, tuned_batch: dict, default_batch: dict, datasets, unit,
                     report: Report) -> Family | None:
    """Per dataset, "try the optimizers at their defaults and keep the best on validation" against each optimizer
    tuned (each at the batch size chosen for it): a family whose chosen treatment is the defaults' pick."""
    val_d = score_table(cells, "val_epochs", "default", datasets)
    test_d = score_table(cells, "test_epochs", "default", datasets)
    test_t = score_table(cells, "test_epochs", "tuned", datasets)
    defaults = [(o, b) for o, b in default_batch.items() if (o, b) in val_d.columns]
    if not defaults:
        return None
    pick = val_d[defaults].idxmin(axis=1)  # per dataset, the default validation prefers
    several = pd.Series({d: test_d.loc[d, pick[d]] for d in pick.index if isinstance(pick[d], tuple)})
    test = pd.DataFrame({"several defaults": several,
                         **{f"{o} tuned": test_t[(o, b)] for o, b in tuned_batch.items()}})
    # judged from the defaults' pick, whatever ranks first: "is trying the defaults as good as tuning one?"
    result = family_tests(test, loss_differences(unit), report.tolerance.on_scale("epochs"), report.statistics,
                          focus="several defaults")
    return Family("defaults", "several", "both", result,
                  judge(result, "several defaults", report.statistics.alpha, report.statistics.sure),
                  {t: t for t in test.columns})
