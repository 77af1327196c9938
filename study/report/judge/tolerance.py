"""The equivalence tolerance on a paired scale, declared before looking (conf/report.yaml's ``tolerance``).

At equal epochs a loss difference is measured in the dataset's **loss unit**: the standard deviation of paired,
same-seed differences of *validation* loss between two tuned cells (each cell's value at a seed the mean over its
tuning runs; the same seed is the same train/validation split), the median over every pair of the dataset's tuned
cells. Paired, because every comparison of the report is paired by seed and dataset; on validation, because test
data never sets anything. The tolerance is ``paired_sd`` of these units. At the cost budgets a difference is the
log2 ratio of two costs (a censored one counted at the cap) and the tolerance a ratio. The sensitivity table shows
P(equivalent) of each comparison as the tolerance shrinks to a tenth of the declared one.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from study.report.judge import stats
from study.report.judge.decide import status
from study.schema.report import Report


def pair_sd(values: np.ndarray) -> np.ndarray:
    """For cells x seeds (with any leading batch axes): the median over every pair of cells of the standard
    deviation over seeds of their paired difference; NaN with fewer than two seeds or two cells."""
    x = np.asarray(values, float)
    cells, seeds = x.shape[-2], x.shape[-1]
    if cells < 2 or seeds < 2:
        return np.full(x.shape[:-2], np.nan)
    centred = x - x.mean(axis=-1, keepdims=True)
    cov = centred @ np.swapaxes(centred, -1, -2) / (seeds - 1)
    first, second = np.triu_indices(cells, 1)
    variance = np.diagonal(cov, axis1=-2, axis2=-1)
    paired = variance[..., first] + variance[..., second] - 2 * cov[..., first, second]
    return np.median(np.sqrt(np.maximum(paired, 0.0)), axis=-1)


def paired_sd(runs: pd.DataFrame) -> pd.Series:
    """Per dataset: the loss unit from the tuned runs' validation loss at E_d (``scoring.run_scores``' rows);
    NaN where it cannot be measured or is 0 (nothing is then divided by it)."""
    tuned = runs[runs["track"] == "tuned"]
    per_seed = tuned.groupby(["dataset", "optimizer", "batch_size", "seed"], sort=False)["val_epochs"].mean()
    out = {}
    for dataset, group in per_seed.groupby(level="dataset", sort=False):
        table = group.unstack("seed").dropna(axis=1, how="any")  # seeds every cell has
        out[dataset] = float(pair_sd(table.to_numpy(float)))
    unit = pd.Series(out, dtype=float)
    unit.index.name = "dataset"
    return unit.where(unit > 0, np.nan)


def differences(budget: str, unit: pd.Series, caps: pd.Series):
    """The paired differences a budget's tests rank (> 0: the reference is better): a loss difference in the
    dataset's loss units, or the log2 ratio of two costs with a censored one (inf) at the dataset's cap."""
    if budget == "epochs":
        return lambda other, reference: stats.scaled_difference(other, reference, unit.reindex(other.index))
    return lambda other, reference: stats.log2_ratio(other, reference, caps.reindex(other.index))


def cap_series(caps: pd.DataFrame, budget: str) -> pd.Series:
    """Per dataset, the cap of a budget."""
    return caps[caps["budget"] == budget].set_index("dataset")["cap"].astype(float)


def pair_differences(a, other: str) -> np.ndarray:
    """The recommended optimizer's paired differences against ``other`` (> 0: the recommended one is better)."""
    return np.asarray(a.family.differences(a.family.scores[other], a.family.scores[a.recommended]), float)


def status_with(a, p_equivalent: dict, sure: float) -> str:
    """The answer's status had the tolerance been another width (the tests other than the Bayesian one do not
    change)."""
    j = a.judgement
    undecided = j.equivalent + j.unresolved
    equivalent = [o for o in undecided if p_equivalent.get(o, 0) >= sure]
    return status(j.behind, equivalent, [o for o in undecided if o not in equivalent], j.ahead)


SENSITIVITY_COLUMNS = ["budget", "track", "multiple", "width", "scale", "optimizer", "p_equivalent", "status"]


def sensitivity(a, report: Report) -> pd.DataFrame:
    """P(practically equivalent) of the recommended optimizer against each other at every multiple of the
    declared tolerance (conf/report.yaml: from the declared one down to a tenth), and the status each gives.
    ``width`` is on the declared scale: loss units, or a cost ratio."""
    if not a.measured:
        return pd.DataFrame(columns=SENSITIVITY_COLUMNS)
    st, tol = report.statistics, report.tolerance
    rows = []
    scale = "loss units" if a.budget == "epochs" else "cost ratio"
    for multiple in tol.sensitivity:
        rope = tol.on_scale(a.budget, multiple)
        probabilities = {}
        for other in a.family.scores.columns:
            if other == a.recommended:
                continue
            d = pair_differences(a, other)
            probabilities[other] = stats.bayesian_signed_rank(d, rope, st.bayes_samples, st.seed)[1] \
                if np.isfinite(d).any() else math.nan
        at_width = status_with(a, probabilities, st.sure)
        for other, p in probabilities.items():
            rows.append({"budget": a.budget, "track": a.track, "multiple": multiple,
                         "width": tol.declared(a.budget, multiple), "scale": scale, "optimizer": other,
                         "p_equivalent": p, "status": at_width})
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def accuracy_equivalence(points: np.ndarray, report: Report) -> float:
    """P(within the declared accuracy tolerance) of paired accuracy differences in points."""
    st = report.statistics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.bayesian_signed_rank(points, report.tolerance.epochs.accuracy_points, st.bayes_samples,
                                          st.seed)[1] if len(points) else math.nan
