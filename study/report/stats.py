"""The statistics behind the verdict: pure functions over numpy arrays and pandas frames.

A *family* is a score table: one row per block (a dataset; the value is the mean over seeds) and one column per
treatment (an optimizer, or a batch size). Lower scores (test loss) are better. The recipe follows Demšar (2006)
and Benavoli et al. (2016, 2017), the standard for comparing learners over many datasets:

1. mean ranks per treatment (rank 1 = lowest loss on a dataset, ties share the average rank);
2. the Friedman test (scipy.stats.friedmanchisquare): can the treatments be told apart at all?
3. each treatment against the best-ranked one (the control) with the Wilcoxon signed-rank test on relative
   differences, p-values corrected with Holm's step-down procedure (k - 1 comparisons, not all k(k-1)/2 pairs:
   with a dozen datasets, all-pairs tests have almost no power);
4. the Nemenyi critical difference for the CD diagram;
5. the Bayesian signed-rank test with a region of practical equivalence (ROPE), which answers "how sure":
   P(control better), P(practically equivalent), P(control worse).

Besides: bootstrap intervals over seeds, epochs-to-target, Dolan-Moré performance profiles and the expected
best-of-k of a random search.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats
from threadpoolctl import threadpool_limits


# --- ranks and omnibus test ------------------------------------------------------------------------------------
def ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Rank of each treatment within each block: 1 = lowest score; ties share the average rank."""
    return table.rank(axis=1, method="average", ascending=True)


def mean_ranks(table: pd.DataFrame) -> pd.Series:
    return ranks(table).mean(axis=0)


@dataclass(frozen=True)
class Omnibus:
    test: str  # "Friedman", or "Wilcoxon" when there are only two treatments, or "none"
    statistic: float
    pvalue: float


def friedman(table: pd.DataFrame) -> Omnibus:
    """Friedman's test over the blocks; with two treatments it is the paired Wilcoxon test instead (scipy's
    Friedman needs three). Degenerate tables (every block tied, fewer than two blocks) give p = 1: no evidence."""
    k, n = table.shape[1], table.shape[0]
    if k < 2 or n < 2:
        return Omnibus("none", float("nan"), 1.0)
    if k == 2:
        test = wilcoxon_signed_rank(relative_difference(table.iloc[:, 1], table.iloc[:, 0]))
        return Omnibus("Wilcoxon", test[0], test[1])
    if (ranks(table).nunique(axis=1) == 1).all():
        return Omnibus("Friedman", 0.0, 1.0)
    result = stats.friedmanchisquare(*(table[column].to_numpy(float) for column in table.columns))
    pvalue = float(result.pvalue)
    return Omnibus("Friedman", float(result.statistic), 1.0 if np.isnan(pvalue) else pvalue)


# --- pairwise against the control --------------------------------------------------------------------------------
def relative_difference(other: pd.Series | np.ndarray, control: pd.Series | np.ndarray) -> np.ndarray:
    """(other - control) / |control| per block: > 0 means the control has the lower (better) loss.

    Relative, because loss scales differ by orders of magnitude between datasets and the signed-rank test ranks
    the sizes of the differences across blocks, which must be commensurable (Demšar 2006, section 3.1.3)."""
    other, control = np.asarray(other, float), np.asarray(control, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = (other - control) / np.abs(control)
    return np.where(other == control, 0.0, diff)


def wilcoxon_signed_rank(differences: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of the paired differences against 0; (statistic, p).

    Zero differences are dropped (Wilcoxon's original treatment); no non-zero difference means no evidence."""
    d = np.asarray(differences, float)
    d = d[np.isfinite(d) & (d != 0.0)]
    if len(d) == 0:
        return 0.0, 1.0
    result = stats.wilcoxon(d)
    return float(result.statistic), float(result.pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down correction (Holm 1979): the i-th smallest of m p-values is multiplied by (m - i + 1), and
    the adjusted values are made monotone so that a hypothesis is never rejected after an accepted one."""
    p = np.asarray(pvalues, float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


# --- critical difference -------------------------------------------------------------------------------------------
def nemenyi_critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's CD = q_alpha sqrt(k (k + 1) / (6 n)), q_alpha the studentized range quantile / sqrt(2) (Demšar
    2006, eq. 5; q_0.05 = 2.850 for k = 6)."""
    if k < 2 or n < 1:
        return float("nan")
    q = stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / np.sqrt(2.0)
    return float(q * np.sqrt(k * (k + 1) / (6.0 * n)))


def nemenyi_pvalues(table: pd.DataFrame) -> pd.DataFrame:
    """All-pairs Nemenyi p-values (scikit-posthocs): only for drawing the CD diagram's cliques."""
    if table.shape[1] < 2 or table.shape[0] < 2:
        return pd.DataFrame(1.0, index=table.columns, columns=table.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = scikit_posthocs.posthoc_nemenyi_friedman(table.to_numpy(float))
    p.index = p.columns = table.columns
    return p.fillna(1.0)


# --- Bayesian signed-rank test ---------------------------------------------------------------------------------------
def bayesian_signed_rank(differences, rope: float, nsamples: int = 50000, seed: int = 0,
                         prior: float = 0.5) -> tuple[float, float, float]:
    """The Bayesian signed-rank test (Benavoli et al. 2014) on paired differences d = other - control:
    (P(d < -rope), P(|d| <= rope), P(d > rope)), each the posterior probability that that region is the most
    probable one.

    It is baycomp.SignedRankTest's sampler with the per-sample loop vectorised (baycomp loops in Python, 0.3 s per
    comparison; the report makes hundreds): the same Dirichlet draws from RandomState(seed), the same pseudo-
    observation 0 with weight ``prior``; tests check it against baycomp draw for draw."""
    d = np.asarray(differences, float)
    d = np.hstack(([0.0], d[np.isfinite(d)]))
    weights = np.ones(len(d))
    weights[0] = prior
    sums = d[:, None] + d[None, :]  # Walsh averages (times 2)

    def heaviside(a, threshold):
        return (a > threshold).astype(float) + 0.5 * (a == threshold).astype(float)

    above, below = heaviside(sums, 2 * rope), heaviside(-sums, 2 * rope)
    draws = np.random.RandomState(seed).dirichlet(weights, nsamples)
    with threadpool_limits(limits=1, user_api="blas"):  # a thin (n, 13) x (13, 13) product: threads only contend
        p_right = np.sum((draws @ above) * draws, axis=1)  # w^T H w per draw: the mass of Walsh averages above
        p_left = np.sum((draws @ below) * draws, axis=1)
    sample = np.column_stack([p_left, 1.0 - p_left - p_right, p_right])
    winners = np.bincount(np.argmax(sample, axis=1), minlength=3) / nsamples
    return float(winners[0]), float(winners[1]), float(winners[2])


# --- a whole family ------------------------------------------------------------------------------------------------
@dataclass
class FamilyResult:
    """Everything the report says about one family of treatments compared over the datasets."""

    scores: pd.DataFrame  # blocks x treatments, the mean test loss over seeds (complete blocks only)
    mean_ranks: pd.Series  # per treatment, sorted best first
    control: str | None
    omnibus: Omnibus
    # one row per non-control treatment: mean_rank, median_rel_diff, wilcoxon_p, holm_p, p_control_better,
    # p_equivalent, p_control_worse
    versus_control: pd.DataFrame
    critical_difference: float
    nemenyi: pd.DataFrame = field(repr=False)

    @property
    def n_blocks(self) -> int:
        return self.scores.shape[0]


def compare_family(scores: pd.DataFrame, rope: float = 0.01, alpha: float = 0.05, nsamples: int = 50000,
                   seed: int = 0) -> FamilyResult:
    """Friedman, then every treatment against the best-ranked one (Wilcoxon + Holm, Bayesian signed-rank).

    Blocks with a missing score are dropped (the tests need complete blocks). The control is the treatment with
    the lowest mean rank; a tie goes to the one listed first (the config's order), so the choice is stable."""
    scores = scores.dropna(axis=0, how="any")
    ranked = mean_ranks(scores) if len(scores) else pd.Series(np.nan, index=scores.columns)
    order = sorted(range(len(ranked)), key=lambda i: (ranked.iloc[i], i))
    ranked = ranked.iloc[order]
    control = ranked.index[0] if len(scores) and len(ranked) else None
    rows = []
    for treatment in ranked.index[1:] if control is not None else []:
        diff = relative_difference(scores[treatment], scores[control])
        statistic, p = wilcoxon_signed_rank(diff)
        # d > rope: the other treatment's loss is higher, i.e. the control is better
        other_better, equivalent, control_better = bayesian_signed_rank(diff, rope, nsamples, seed)
        rows.append({"treatment": treatment, "mean_rank": ranked[treatment], "median_rel_diff": float(np.median(diff)),
                     "wilcoxon_stat": statistic, "wilcoxon_p": p, "p_control_better": control_better,
                     "p_equivalent": equivalent, "p_control_worse": other_better})
    versus = pd.DataFrame(rows, columns=["treatment", "mean_rank", "median_rel_diff", "wilcoxon_stat", "wilcoxon_p",
                                         "p_control_better", "p_equivalent", "p_control_worse"]).set_index("treatment")
    versus.insert(4, "holm_p", holm(versus["wilcoxon_p"].to_numpy()))
    return FamilyResult(scores, ranked, control, friedman(scores), versus,
                        nemenyi_critical_difference(scores.shape[1], scores.shape[0], alpha), nemenyi_pvalues(scores))


# --- intervals over seeds --------------------------------------------------------------------------------------------
def bootstrap_mean_ci(values: np.ndarray, level: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean along the last axis (scipy.stats.bootstrap), one per row.

    Percentile rather than BCa: with five seeds BCa's acceleration estimate is unstable and undefined when the
    values tie. Rows with fewer than two finite values get NaN."""
    values = np.atleast_2d(np.asarray(values, float))
    low, high = np.full(values.shape[0], np.nan), np.full(values.shape[0], np.nan)
    complete = np.isfinite(values).all(axis=1) & (values.shape[1] >= 2)
    if complete.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a degenerate (constant) row is fine: its interval is the point
            interval = stats.bootstrap((values[complete],), np.mean, axis=-1, vectorized=True,
                                       n_resamples=n_resamples, confidence_level=level, method="percentile",
                                       rng=np.random.default_rng(seed)).confidence_interval
        low[complete], high[complete] = interval.low, interval.high
    return low, high


# --- time to target and performance profiles -------------------------------------------------------------------------
def first_reach(curve: np.ndarray, target: float) -> int | float:
    """The first (1-based) epoch at which ``curve`` <= target; inf if it never does."""
    hits = np.flatnonzero(np.asarray(curve, float) <= target)
    return int(hits[0]) + 1 if len(hits) else float("inf")


def performance_profile(times: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """Dolan & Moré (2002): rho_s(tau) = share of problems (rows) on which solver s (column) needs at most tau
    times the fastest solver's time. inf = never reached; a problem no solver reaches counts against every solver."""
    t = times.to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.min(t, axis=1, keepdims=True)
        ratio = np.where(np.isfinite(t) & np.isfinite(best), t / best, np.inf)
    rho = (ratio[None, :, :] <= np.asarray(taus, float)[:, None, None]).mean(axis=1)
    return pd.DataFrame(rho, index=pd.Index(np.asarray(taus, float), name="tau"), columns=times.columns)


# --- tuning budgets --------------------------------------------------------------------------------------------------
def expected_best_of_k(values, ks) -> np.ndarray:
    """E[min of k trials drawn with replacement from ``values``]: the expectation of the bootstrap estimate of
    the best-of-k (Dodge et al. 2019; Sivaprasad et al. 2020), in closed form so there is no resampling noise.

    With v_(1) <= ... <= v_(n), P(min = v_(i)) = ((n - i + 1) / n)^k - ((n - i) / n)^k."""
    v = np.sort(np.asarray(values, float)[np.isfinite(np.asarray(values, float))])
    n = len(v)
    if n == 0:
        return np.full(len(np.atleast_1d(ks)), np.nan)
    survive = (n - np.arange(n + 1)) / n  # P(one draw >= v_(i)) for i = 1..n+1
    out = []
    for k in np.atleast_1d(ks):
        weights = survive[:-1] ** k - survive[1:] ** k
        out.append(float(np.dot(weights, v)))
    return np.array(out)


def best_so_far(values) -> np.ndarray:
    """Running minimum in trial order; NaN (pruned, failed) trials do not count; NaN until the first value."""
    v = np.asarray(values, float)
    return np.fmin.accumulate(np.where(np.isfinite(v), v, np.nan)) if len(v) else v
