"""The statistics behind the verdict: pure functions over numpy arrays and pandas frames.

A *family* is a score table: one row per block (a dataset; the value is the mean or median over seeds) and one
column per treatment (an optimizer, or a batch size). Lower scores are better. The recipe, declared before
looking in conf/report.yaml, follows Demšar (2006) and García & Herrera (2008), with Benavoli et al. (2017) for
"how sure":

1. mean ranks per treatment (rank 1 = lowest score on a dataset, ties share the average rank; a run that never
   reached a target is infinitely slow and ranks last);
2. the omnibus Friedman test in Iman and Davenport's F form (less conservative than the chi-square form);
3. all pairs compared with the Wilcoxon signed-rank test on paired differences that are commensurable across
   datasets (a loss difference in units of the dataset's seed-to-seed spread; a log2 time ratio), the p-values
   corrected with Holm's step-down procedure over all k(k-1)/2 pairs;
4. effect sizes: the median paired difference over datasets with a bootstrap interval;
5. the Bayesian signed-rank test with a region of practical equivalence (ROPE) on the same scale: P(better),
   P(practically equivalent), P(worse), so that "the same" can be an answer.

Besides: the Nemenyi critical difference for CD diagrams, bootstrap intervals over seeds, performance profiles and
the expected best-of-k of a random search.
"""
from __future__ import annotations

import functools
import math
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
    test: str  # "Iman-Davenport", "Wilcoxon" when there are only two treatments, or "none"
    statistic: float  # F (Iman-Davenport) or W (Wilcoxon)
    pvalue: float
    chi2: float = float("nan")  # Friedman's chi-square, from which F is computed


def iman_davenport(table: pd.DataFrame, differences=None) -> Omnibus:
    """Friedman's test in Iman and Davenport's form, F = (N - 1) chi2 / (N (k - 1) - chi2) with (k - 1) and
    (k - 1)(N - 1) degrees of freedom (Demšar 2006, eq. 2); with two treatments it is the Wilcoxon signed-rank
    test of ``differences(second, first)``. Degenerate tables (every block tied, fewer than two blocks) give
    p = 1: no evidence."""
    k, n = table.shape[1], table.shape[0]
    if k < 2 or n < 2:
        return Omnibus("none", float("nan"), 1.0)
    if k == 2:
        first, second = table.iloc[:, 0], table.iloc[:, 1]
        w, p = wilcoxon_signed_rank(differences(second, first) if differences else second - first)
        return Omnibus("Wilcoxon", w, p)
    r = ranks(table)
    if (r.nunique(axis=1) == 1).all():
        return Omnibus("Iman-Davenport", 0.0, 1.0, 0.0)
    chi2 = float(stats.friedmanchisquare(*(r[c].to_numpy(float) for c in r.columns)).statistic)
    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # every dataset ranks the treatments the same way
        return Omnibus("Iman-Davenport", float("inf"), 0.0, chi2)
    f = (n - 1) * chi2 / denominator
    return Omnibus("Iman-Davenport", f, float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))), chi2)


# --- paired differences that can be ranked across datasets ------------------------------------------------------
def scaled_difference(other, reference, scale) -> np.ndarray:
    """(other - reference) / scale per dataset: > 0 means the reference has the lower (better) score. ``scale`` is
    the dataset's seed-to-seed spread of the score, so a difference reads as "this many times the noise" and
    nothing is divided by a loss that may be near zero."""
    other, reference, scale = (np.asarray(x, float) for x in (other, reference, scale))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (other - reference) / scale
    return np.where(other == reference, 0.0, d)


def log2_ratio(other, reference, never) -> np.ndarray:
    """log2(other / reference) per dataset for costs (updates, seconds to a target): > 0 means the reference is
    cheaper. A cost never paid off (inf: the target was never reached) counts as ``never`` (twice the dataset's
    largest finite cost, the PAR-2 convention of solver benchmarks), so two runs that both never arrive tie."""
    other, reference, never = (np.asarray(x, float) for x in (other, reference, never))
    o, r = np.where(np.isfinite(other), other, never), np.where(np.isfinite(reference), reference, never)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.log2(o / r)
    return np.where(o == r, 0.0, d)


def wilcoxon_signed_rank(differences: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of the paired differences against 0; (statistic, p).

    Zero differences are dropped (Wilcoxon's original treatment); no non-zero difference means no evidence. The
    exact distribution without ties; with tied magnitudes (costs often tie: the same epoch to the target), the
    normal approximation with the tie correction, where scipy would run a permutation test of 0.4 s a call."""
    d = np.asarray(differences, float)
    d = d[np.isfinite(d) & (d != 0.0)]
    if len(d) == 0:
        return 0.0, 1.0
    ties = len(np.unique(np.abs(d))) < len(d)
    result = stats.wilcoxon(d, method="approx" if ties else "exact")
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
    sums = d[:, None] + d[None, :]  # Walsh averages (times 2)

    def heaviside(a, threshold):
        return (a > threshold).astype(float) + 0.5 * (a == threshold).astype(float)

    above, below = heaviside(sums, 2 * rope), heaviside(-sums, 2 * rope)
    draws = _dirichlet_draws(len(d), prior, nsamples, seed)
    with threadpool_limits(limits=1, user_api="blas"):  # a thin (n, 13) x (13, 13) product: threads only contend
        p_right = np.sum((draws @ above) * draws, axis=1)  # w^T H w per draw: the mass of Walsh averages above
        p_left = np.sum((draws @ below) * draws, axis=1)
    sample = np.column_stack([p_left, 1.0 - p_left - p_right, p_right])
    winners = np.bincount(np.argmax(sample, axis=1), minlength=3) / nsamples
    return float(winners[0]), float(winners[1]), float(winners[2])


@functools.lru_cache(maxsize=8)
def _dirichlet_draws(n: int, prior: float, nsamples: int, seed: int) -> np.ndarray:
    """The posterior draws depend only on the number of differences, the prior and the seed: drawn once for all
    the comparisons of a report (three quarters of a test's time)."""
    weights = np.ones(n)
    weights[0] = prior
    draws = np.random.RandomState(seed).dirichlet(weights, nsamples)
    draws.flags.writeable = False
    return draws


# --- a whole family ------------------------------------------------------------------------------------------------
def bootstrap_median_ci(values, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of paired differences over datasets."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.all(v == v[0]):
        return (float(v[0]), float(v[0])) if len(v) else (float("nan"), float("nan"))
    draws = np.random.default_rng(seed).integers(0, len(v), (n_resamples, len(v)))
    medians = np.median(v[draws], axis=1)
    return float(np.quantile(medians, (1 - level) / 2)), float(np.quantile(medians, (1 + level) / 2))


@dataclass(frozen=True)
class FamilyResult:
    """Everything the report says about one family of treatments compared over the datasets."""

    scores: pd.DataFrame  # blocks x treatments (complete blocks only)
    mean_ranks: pd.Series  # per treatment, sorted best first
    omnibus: Omnibus
    # one row per pair (a ranked above b): a, b, median paired difference (b - a, > 0: a is better) with low and
    # high, wilcoxon_stat, wilcoxon_p, holm_p, p_a_better, p_equivalent, p_b_better
    pairs: pd.DataFrame
    critical_difference: float
    nemenyi: pd.DataFrame = field(repr=False)
    differences: object = field(default=None, repr=False)  # differences(b_column, a_column), as compared

    @property
    def n_blocks(self) -> int:
        return self.scores.shape[0]

    def pair(self, a: str, b: str) -> dict:
        """The comparison of a with b, oriented so that a positive median and p_a_better speak for a."""
        p = self.pairs
        row = p[(p["a"] == a) & (p["b"] == b)]
        if len(row):
            return row.iloc[0].to_dict()
        row = p[(p["a"] == b) & (p["b"] == a)].iloc[0].to_dict()
        return {**row, "a": a, "b": b, "median": -row["median"], "low": -row["high"], "high": -row["low"],
                "p_a_better": row["p_b_better"], "p_b_better": row["p_a_better"]}


def compare_family(scores: pd.DataFrame, differences, rope: float, alpha: float = 0.05, nsamples: int = 50000,
                   seed: int = 0, confidence: float = 0.95, focus: str | None = None,
                   resamples: int = 2000) -> FamilyResult:
    """Iman-Davenport, then every pair: Wilcoxon with Holm's correction over all pairs, a bootstrap interval of
    the median paired difference, the Bayesian signed-rank test with ``rope``. ``differences(b_column,
    a_column)`` gives the paired differences on a scale comparable across datasets (> 0: a is better). With
    ``focus``, the Bayesian test is run only for the pairs that involve it (the treatment chosen on validation:
    the only pairs a verdict reads), the others' posterior columns are NaN.

    Blocks with a missing score are dropped (the tests need complete blocks). Mean ranks order the treatments; a
    tie goes to the one listed first (the config's order), so the order is stable."""
    scores = scores.dropna(axis=0, how="any")
    ranked = mean_ranks(scores) if len(scores) else pd.Series(np.nan, index=scores.columns)
    order = sorted(range(len(ranked)), key=lambda i: (ranked.iloc[i], i))
    ranked = ranked.iloc[order]
    names = list(ranked.index)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = np.asarray(differences(scores[b], scores[a]), float)
            statistic, p = wilcoxon_signed_rank(d)
            low, high = bootstrap_median_ci(d, confidence, resamples, seed)
            wanted = len(d) and (focus is None or focus in (a, b))
            b_better, equivalent, a_better = bayesian_signed_rank(d, rope, nsamples, seed) if wanted \
                else (float("nan"),) * 3
            rows.append({"a": a, "b": b, "median": float(np.median(d)) if len(d) else float("nan"), "low": low,
                         "high": high, "wilcoxon_stat": statistic, "wilcoxon_p": p, "p_a_better": a_better,
                         "p_equivalent": equivalent, "p_b_better": b_better})
    pairs = pd.DataFrame(rows, columns=["a", "b", "median", "low", "high", "wilcoxon_stat", "wilcoxon_p",
                                        "p_a_better", "p_equivalent", "p_b_better"])
    pairs.insert(7, "holm_p", holm(pairs["wilcoxon_p"].to_numpy()))
    return FamilyResult(scores, ranked, iman_davenport(scores, differences), pairs,
                        nemenyi_critical_difference(scores.shape[1], scores.shape[0], alpha), nemenyi_pvalues(scores),
                        differences)


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


def finite_median(values) -> float:
    """The median of the finite values; NaN (printed n/a) where there is none, without numpy's All-NaN warning."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else math.nan
