"""Sivaprasad et al. 2020, "Optimizer benchmarking needs to account for hyperparameter tuning": Adam is the best
choice at small tuning budgets. Checked over the whole curve of k random trials (k = 1 .. the arm's trials).

At each k, per dataset, every optimizer (at the batch size chosen for it at equal epochs, tuned) draws k trials at
random from its random-search arm and keeps the one best on validation:

- **P(Adam picked)**: the probability that Adam's kept trial is the lowest on validation of all the optimizers' kept
  trials, i.e. that a practitioner with k trials per optimizer ends up using Adam; exact (``picked``), the mean over
  the datasets with a bootstrap interval over them. A description of the choice, not of its quality.
- **The verdict's test**: per dataset, Adam's expected test loss of validation's pick (``tuning_value``'s expected
  best-of-k) against the best other optimizer's, the one whose expected best of k is lowest on validation there
  (chosen on validation); the differences in loss units over the datasets, Wilcoxon signed-rank, two-sided.
  Significantly lower agrees, significantly higher disagrees, else cannot tell: one test, read the same way in both
  directions. conf/claims.yaml's ``small_budget`` is the k the verdict is given at; the other k are the curve.

The prior's role: the random arm draws from the search spaces this project wrote, so at small k the outcome is an
average over those ranges (``prior``) and says as much about them as about Adam.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.report import fmt
from study.report.judge import stats
from study.report.judge.decide import CANNOT_TELL, FINDING
from study.report.judge.tuning_value import SCORED, pick_weights
from study.schema.report import Statistics

FINDING_TEXT = "Adam is the best choice at small tuning budgets"
CURVE_COLUMNS = ["k", "optimizer", "batch_size", "p_picked", "p_low", "p_high", "datasets", "comparator_median",
                 "comparator_p", "verdict"]


def picked(values: list, k: int) -> np.ndarray:
    """P(each treatment is the one validation picks) when each draws k of its own trials at random (with
    replacement), keeps its lowest, and the lowest kept one is picked; a tie goes to the treatment listed first.
    ``values``: per treatment, its trials' validation losses. Exact: P(i picked) = sum over i's trials j of P(i
    keeps j) x prod over the others of P(their kept trial is above v_j) (at or above, for those listed after i)."""
    ordered = [np.sort(np.asarray(v, float)) for v in values]
    out = np.zeros(len(ordered))
    for i, mine in enumerate(ordered):
        p = pick_weights(len(mine), k)
        for j, other in enumerate(ordered):
            if j != i:
                above = len(other) - np.searchsorted(other, mine, side="left" if j > i else "right")
                p = p * (above / len(other)) ** k
        out[i] = float(p.sum())
    return out


def prior(spaces: dict, optimizer: str = "adam") -> str:
    """An optimizer's search space as the random arm draws from it: "eta in [1e-05, 3] (log-uniform), 1 - beta1 in
    [...]"."""
    parts = []
    for name, space in spaces.get(optimizer, {}).items():
        if not isinstance(space, dict):
            continue
        if space.get("fixed") is not None:
            parts.append(f"{name} fixed at {fmt.num(space['fixed'])}")
            continue
        label = f"1 - {name}" if space.get("one_minus") else name
        parts.append(f"{label} in [{fmt.num(space.get('low'))}, {fmt.num(space.get('high'))}]"
                     + (" log-uniform" if space.get("log", True) else " uniform"))
    return ", ".join(parts) or "no recorded search space"


def _arm_values(trials: pd.DataFrame, chosen_batch: dict) -> dict:
    """Per (dataset, optimizer at its chosen batch size): the random arm's validation losses (a diverged trial at
    its penalty, as in the expected best-of-k). Only the validation column is read."""
    arm = trials[(trials["arm"] == "random") & trials["state"].isin(SCORED)]
    arm = arm[np.isfinite(arm["value"].astype(float))]
    keep = [chosen_batch.get(o) == str(b) for o, b in zip(arm["optimizer"], arm["batch_size"])]
    return {key: group["value"].to_numpy(float) for key, group in arm[keep].groupby(["dataset", "optimizer"],
                                                                                    sort=False)}


def _comparison(at_k: pd.DataFrame, optimizers: list, datasets: list, unit: pd.Series, alpha: float):
    """At one k: per dataset the best other optimizer by expected best-of-k validation loss (ties to the sweep's
    order), and Adam's expected test loss against it: (picks, median, p, verdict as True/False/None)."""
    table = lambda column: at_k.pivot_table(index="dataset", columns="optimizer", values=column,  # noqa: E731
                                            aggfunc="first").reindex(index=datasets, columns=optimizers)
    val, test = table("val").dropna(), table("test")
    others = [o for o in optimizers if o != "adam"]
    if val.empty or not others:
        return {}, math.nan, math.nan, None
    picks = {d: min(others, key=lambda o: (val.loc[d, o], others.index(o))) for d in val.index}
    d = stats.scaled_difference([test.loc[x, picks[x]] for x in val.index], test.loc[val.index, "adam"],
                                unit.reindex(val.index))  # > 0: Adam's pick scores lower on test
    d = d[np.isfinite(d)]
    median = float(np.median(d)) if len(d) else math.nan
    p = stats.wilcoxon_signed_rank(d)[1] if len(d) else math.nan
    verdict = None if not (p < alpha) or median == 0 else bool(median > 0)
    return picks, median, p, verdict


def curve(trials: pd.DataFrame, random_curves: pd.DataFrame, chosen_batch: dict, datasets, unit: pd.Series,
          st: Statistics) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The whole curve over k: per k and optimizer P(picked) with its interval (CURVE_COLUMNS; Adam's rows carry the
    comparison with the best other optimizer and its verdict word), and every comparator chosen on validation
    (source, choice, k, dataset, chosen)."""
    optimizers = [o for o in chosen_batch]
    arm = _arm_values(trials, chosen_batch)
    complete = [d for d in datasets if all((d, o) in arm for o in optimizers)]
    max_k = int(random_curves["k"].max()) if len(random_curves) else 0
    curves = random_curves[[chosen_batch.get(o) == str(b) for o, b in zip(random_curves["optimizer"],
                                                                          random_curves["batch_size"])]]
    rng = np.random.default_rng(st.seed)
    draws = rng.integers(0, len(complete), (st.bootstrap_resamples, len(complete))) if complete else None
    rows, choices = [], []
    for k in range(1, max_k + 1):
        per_dataset = np.array([picked([arm[(d, o)] for o in optimizers], k) for d in complete]).reshape(
            len(complete), len(optimizers))
        low = high = np.full(len(optimizers), np.nan)
        if complete:
            resampled = per_dataset[draws].mean(axis=1)
            low, high = np.quantile(resampled, [(1 - st.confidence) / 2, (1 + st.confidence) / 2], axis=0)
        picks, median, p, verdict = _comparison(curves[curves["k"] == k], optimizers, list(datasets), unit, st.alpha) \
            if "adam" in optimizers else ({}, math.nan, math.nan, None)
        choices += [{"source": "Sivaprasad et al. 2020", "choice": "best other optimizer than Adam", "k": k,
                     "dataset": d, "chosen": o} for d, o in picks.items()]
        for i, o in enumerate(optimizers):
            adam = o == "adam"
            rows.append({"k": k, "optimizer": o, "batch_size": chosen_batch[o],
                         "p_picked": float(per_dataset[:, i].mean()) if complete else math.nan,
                         "p_low": float(low[i]), "p_high": float(high[i]), "datasets": len(complete),
                         "comparator_median": median if adam else math.nan,
                         "comparator_p": p if adam else math.nan,
                         "verdict": FINDING.word(verdict) if adam else ""})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS), pd.DataFrame(
        choices, columns=["source", "choice", "k", "dataset", "chosen"])


def finding(table: pd.DataFrame, small: int, spaces: dict, alpha: float) -> dict:
    """The row at conf/claims.yaml's small budget, read from the curve: criterion, number, verdict, evidence,
    threshold."""
    space = prior(spaces)
    criterion = (f"with k random trials per optimizer (each at its batch size chosen at equal epochs, tuned), per "
                 f"dataset: Adam's expected test loss of validation's pick against the best other optimizer's (the "
                 f"one lowest on validation there), in loss units over the datasets, Wilcoxon signed-rank: "
                 f"significantly lower agrees, significantly higher disagrees (p < {fmt.num(alpha)}), else cannot "
                 f"tell; the verdict at k = {small}, every k in `tables/sivaprasad_k.csv`. The prior's role: the "
                 f"random arm draws from the search spaces this project wrote (Adam: {space}), so at small k the "
                 f"outcome is an average over these ranges and speaks of them as much as of Adam; other ranges "
                 f"would move it")
    adam = table[table["optimizer"] == "adam"] if len(table) else table
    if adam.empty:
        why = "no random-search arm in this sweep" if table.empty else "Adam is not in this sweep"
        return {"finding": FINDING_TEXT, "criterion": criterion, "number": why, "verdict": CANNOT_TELL}
    at = adam[adam["k"] == min(small, int(adam["k"].max()))].iloc[0]
    n_opt = int(table["optimizer"].nunique())
    by_word = {w: [int(k) for k in adam.loc[adam["verdict"] == w, "k"]] for w in (FINDING.holds, FINDING.fails)}
    over = "; ".join(f"{w} at k = {', '.join(map(str, ks))}" for w, ks in by_word.items() if ks) or \
        "cannot tell at every k"
    number = (f"k = {int(at['k'])}: P(validation picks Adam) {fmt.prob(at['p_picked'])} "
              f"[{fmt.prob(at['p_low'])}, {fmt.prob(at['p_high'])}] over {int(at['datasets'])} datasets (1/{n_opt} "
              f"if the {n_opt} optimizers were alike); the best other's expected test loss minus Adam's: median "
              f"{fmt.num(at['comparator_median'])} loss units (> 0: Adam lower), {fmt.p(at['comparator_p'])}; over "
              f"k = 1..{int(adam['k'].max())}: {over}")
    return {"finding": FINDING_TEXT, "criterion": criterion, "number": number, "verdict": at["verdict"],
            "evidence": float(at["comparator_p"]), "threshold": alpha}
